"""One voice session: the conversation between a connected client and the agent.

The data's path, in order:

    client.audio ─► resample to 16 kHz ─► TurnDetector (VAD + endpointing)
                                              │ speech started / ended
                                              ▼
                                   Utterance (streaming STT) ─► user.transcript.*
                                              │ final text
                                              ▼
                               AgentTurn: webhook (SSE) ─► response.text / response.data
                                              │ text to speak, sentence by sentence
                                              ▼
                                  TextToSpeech ─► response.audio ─► response.end

Push-to-talk triggers and client `vad_events` drive the same turn machinery as the VAD. A user
turn that starts while the agent is still generating or its audio is still playing cancels the
agent turn at once (when the session allows interruption): the webhook stream and synthesis stop
and the turn's queued audio is dropped before `turn.start` goes out.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import ClassVar

from layercode_client import protocol as p
from layercode_client.errors import ProtocolError, UnknownMessageType

from .agent import (
    AgentData,
    AgentEnd,
    AgentError,
    AgentHangup,
    AgentSpeech,
    WebhookAgent,
    WebhookEvent,
)
from .audio import Resampler
from .keys import SessionGrant
from .outbox import Outbox
from .store import SessionStore
from .stt import RecognizerPool
from .timing import StreamClock, TurnTimings
from .tts import SentenceSplitter, TextToSpeech
from .turns import SpeechAudio, SpeechEnded, SpeechStarted, TurnDetector, TurnSettings

log = logging.getLogger("server.pipeline")

PIPELINE_RATE = 16000
HANGUP_PLAYBACK_GRACE_S = 5.0


def new_turn_id() -> str:
    return "turn_" + secrets.token_hex(8)


@dataclass
class PipelineServices:
    """Process-wide parts, built once at start and shared by every session."""

    store: SessionStore
    recognizers: RecognizerPool
    tts: TextToSpeech
    agent: WebhookAgent
    turn_settings: TurnSettings = field(default_factory=TurnSettings)
    on_turn_timings: Callable[[str, dict], None] | None = None  # for benchmarks


class Utterance:
    """One user utterance being recognised; audio is queued so the socket never waits on STT."""

    def __init__(self, pool: RecognizerPool, on_interim: Callable[[str], None]):
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._recognise(pool, on_interim), name="stt")

    def feed(self, pcm: bytes) -> None:
        if pcm:
            self._queue.put_nowait(pcm)

    async def finish(self) -> str:
        self._queue.put_nowait(None)
        return await self._task

    async def cancel(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _recognise(self, pool: RecognizerPool, on_interim: Callable[[str], None]) -> str:
        async with pool.utterance() as recognizer:
            done = False
            while not done:
                # Whatever queued up while the recogniser was busy goes in one request.
                pieces = [await self._queue.get()]
                while not self._queue.empty():
                    pieces.append(self._queue.get_nowait())
                done = pieces[-1] is None
                pcm = b"".join(p for p in pieces if p is not None)
                if pcm and (interim := await recognizer.feed(pcm)):
                    on_interim(interim)
            return (await recognizer.finish()).strip()


@dataclass
class AgentTurn:
    turn_id: str
    task: asyncio.Task | None = None
    generating: bool = True
    audio_sent: bool = False
    played: asyncio.Event = field(default_factory=asyncio.Event)
    spoken: list[str] = field(default_factory=list)

    @property
    def active(self) -> bool:
        """Still producing, or its audio may still be playing in the browser."""
        return self.generating or (self.audio_sent and not self.played.is_set())


class PipelineSession:
    def __init__(
        self,
        grant: SessionGrant,
        services: PipelineServices,
        send_text: Callable[[str], Awaitable[None]],
        close: Callable[[int, str], Awaitable[None]],
    ):
        self.grant = grant
        self.config = grant.config
        self.services = services
        self.connection_id = "conn_" + secrets.token_hex(6)
        self.outbox = Outbox(send_text)
        self._close = close
        self.clock = StreamClock(PIPELINE_RATE)
        self.resampler = (
            Resampler(self.config.input_sample_rate, PIPELINE_RATE)
            if self.config.input_sample_rate != PIPELINE_RATE
            else None
        )
        self.detector = TurnDetector(services.turn_settings)
        self.utterance: Utterance | None = None
        self.user_turn_id: str | None = None
        self.user_timings: TurnTimings | None = None
        self.interim_counter = 0
        self.agent_turn: AgentTurn | None = None
        self.agent_lock = asyncio.Lock()
        self.started = False
        self.ptt_held = False
        self._tasks: set[asyncio.Task] = set()
        self.log = logging.LoggerAdapter(log, {"ctx": {"session": grant.session_id}})

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self, frames: AsyncIterator[str]) -> None:
        """Serve the client until it disconnects; clean up everything the session started."""
        writer = asyncio.create_task(self._write(), name="outbox")
        self.log.info(
            "session connected",
            extra={"ctx": {"session": self.grant.session_id, "connection": self.connection_id,
                           "trigger": self.config.trigger, "rate": self.config.input_sample_rate,
                           "resumed": self.grant.resumed}},
        )  # fmt: skip
        try:
            async for frame in frames:
                await self.handle(frame)
        finally:
            await self._shutdown()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _write(self) -> None:
        try:
            await self.outbox.run()
        except Exception:  # the client went away mid-write: the receive loop ends too
            self.log.debug("outbox stopped: the client is gone")

    async def _shutdown(self) -> None:
        self.outbox.close()
        if self.utterance:
            await self.utterance.cancel()
            self.utterance = None
        await self._cancel_agent_turn()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._notify_agent("session.end")
        self.log.info("session ended")

    def _spawn(self, coro, name: str) -> asyncio.Task:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- inbound -------------------------------------------------------------------------------

    async def handle(self, frame: str) -> None:
        try:
            message = p.decode(frame, allowed=p.CLIENT_MESSAGES)
        except UnknownMessageType as error:
            self.log.warning("ignored a message of unknown type %r", error.message_type)
            return
        except ProtocolError as error:
            self.outbox.put(p.ErrorMessage(code=error.code, message=error.message))
            return
        handler = self._handlers.get(type(message))
        if handler is not None:
            await handler(self, message)

    async def on_ready(self, message: p.ClientReady) -> None:
        await self._start()

    async def on_audio(self, message: p.ClientAudio) -> None:
        try:
            pcm = base64.b64decode(message.content, validate=True)
        except (binascii.Error, ValueError):
            error = p.ErrorMessage(code="protocol_error", message="client.audio is not base64")
            self.outbox.put(error)
            return
        if len(pcm) % 2:
            pcm = pcm[:-1]
        await self._start()
        if self.resampler is not None:
            pcm = self.resampler.process(pcm)
        self.clock.advance(len(pcm) // 2, time.monotonic())
        if self.config.push_to_talk:
            if self.utterance is not None:
                self.utterance.feed(pcm)
            return
        for event in self.detector.feed(pcm):
            if isinstance(event, SpeechStarted):
                await self._user_started(event.preroll)
            elif isinstance(event, SpeechAudio):
                if self.utterance is not None:
                    self.utterance.feed(event.pcm)
            elif isinstance(event, SpeechEnded):
                await self._user_finished(event.speech_end_s)

    async def on_turn_start(self, message: p.TriggerTurnStart) -> None:
        if self.ptt_held:
            return
        self.ptt_held = True
        await self._start()
        await self._user_started(b"", force=True)

    async def on_turn_end(self, message: p.TriggerTurnEnd) -> None:
        if not self.ptt_held:
            return
        self.ptt_held = False
        await self._user_finished(self.clock.seconds)

    async def on_vad(self, message: p.VadEvent) -> None:
        """Client-side VAD hints (the official SDK): the end of speech ends the turn now."""
        if message.event == "vad_end" and not self.config.push_to_talk:
            for event in self.detector.force_end():
                await self._user_finished(event.speech_end_s)

    async def on_replay_finished(self, message: p.ReplayFinished) -> None:
        turn = self.agent_turn
        if turn is not None and turn.audio_sent and not turn.generating:
            self._finish_agent_playback(turn)

    async def on_text(self, message: p.ClientResponseText) -> None:
        text = message.content.strip()
        if not text:
            return
        await self._start()
        await self._interrupt_agent(reason="typed text")
        turn_id = new_turn_id()
        self.outbox.put(p.UserTranscript(content=text, turn_id=turn_id))
        event = await self._event("message", turn_id=turn_id, text=text)  # history before this turn
        await self.services.store.append(self.grant.session_id, "user", text, turn_id)
        self._start_agent_turn(event, None)

    async def on_data(self, message: p.ClientResponseData) -> None:
        await self._start()
        self._start_agent_turn(await self._event("data", data=message.data), None)

    _handlers: ClassVar[dict] = {
        p.ClientReady: on_ready,
        p.ClientAudio: on_audio,
        p.TriggerTurnStart: on_turn_start,
        p.TriggerTurnEnd: on_turn_end,
        p.VadEvent: on_vad,
        p.ReplayFinished: on_replay_finished,
        p.ClientResponseText: on_text,
        p.ClientResponseData: on_data,
    }

    # -- user turns ----------------------------------------------------------------------------

    async def _start(self) -> None:
        """The first sign of a live client starts the session: the agent may speak first."""
        if self.started:
            return
        self.started = True
        history = [t.to_dict() for t in (await self.services.store.history(self.grant.session_id))]
        event = await self._event("session.start")
        event.extra = {"resumed": self.grant.resumed, "history": history}
        self._start_agent_turn(event, None)

    async def _user_started(self, preroll: bytes, *, force: bool = False) -> None:
        turn = self.agent_turn
        if turn is not None and turn.active:
            if not (self.config.can_interrupt or force):
                self.log.debug("user speech ignored: the agent cannot be interrupted")
                return
            await self._interrupt_agent(reason="barge-in")
        if self.utterance is not None:
            await self.utterance.cancel()
        self.user_turn_id = new_turn_id()
        self.user_timings = TurnTimings()
        self.interim_counter = 0
        self.outbox.put_urgent(p.TurnStart(role="user", turn_id=self.user_turn_id))
        self.utterance = Utterance(self.services.recognizers, self._send_interim)
        self.utterance.feed(preroll)

    def _send_interim(self, text: str) -> None:
        self.interim_counter += 1
        self.outbox.put(
            p.UserTranscriptInterimDelta(
                content=text, turn_id=self.user_turn_id, delta_counter=self.interim_counter
            )
        )

    async def _user_finished(self, speech_end_s: float) -> None:
        utterance, self.utterance = self.utterance, None
        if utterance is None:
            return
        timings = self.user_timings or TurnTimings()
        timings.speech_end = self.clock.wall_time_of(speech_end_s)
        timings.endpoint = time.monotonic()
        turn_id = self.user_turn_id
        text = await utterance.finish()
        timings.transcript = time.monotonic()
        self.outbox.put(p.TurnEnd(role="user", turn_id=turn_id))
        if not text:
            self.log.info("user turn had no words", extra={"ctx": {"turn": turn_id}})
            return
        counter = self.interim_counter + 1
        self.outbox.put(p.UserTranscriptDelta(content=text, turn_id=turn_id, delta_counter=counter))
        self.outbox.put(p.UserTranscript(content=text, turn_id=turn_id))
        event = await self._event("message", turn_id=turn_id, text=text)  # history before this turn
        await self.services.store.append(self.grant.session_id, "user", text, turn_id)
        self.log.info("user said %r", text, extra={"ctx": {"turn": turn_id}})
        self._start_agent_turn(event, timings)

    # -- agent turns ---------------------------------------------------------------------------

    async def _event(self, kind: str, **fields) -> WebhookEvent:
        history = None
        if kind == "message":
            history = [
                t.to_dict() for t in (await self.services.store.history(self.grant.session_id))
            ]
        event = WebhookEvent(
            type=kind,
            session_id=self.grant.session_id,
            conversation_id=self.grant.session_id,
            connection_id=self.connection_id,
            metadata=self.grant.metadata,
            **fields,
        )
        if history is not None:
            event.extra = {"history": history}
        return event

    def _start_agent_turn(self, event: WebhookEvent, timings: TurnTimings | None) -> None:
        turn = AgentTurn(turn_id=event.turn_id or new_turn_id())
        event.turn_id = turn.turn_id
        turn.task = self._spawn(self._run_agent_turn(turn, event, timings), f"agent-{event.type}")

    async def _run_agent_turn(
        self, turn: AgentTurn, event: WebhookEvent, timings: TurnTimings | None
    ) -> None:
        async with self.agent_lock:
            self.agent_turn = turn
            timings = timings or TurnTimings()
            ctx = {"ctx": {"session": self.grant.session_id, "turn": turn.turn_id}}
            self.outbox.put(p.TurnStart(role="assistant", turn_id=turn.turn_id))
            sentences: asyncio.Queue[str | None] = asyncio.Queue()
            speaker = self._spawn(self._speak(turn, sentences, timings), "tts")
            hangup = False
            try:
                hangup = await self._converse(turn, event, sentences, timings)
            except AgentError as error:
                self.log.warning("agent failed: %s (%s)", error.message, error.code, extra=ctx)
                self.outbox.put(
                    p.ErrorMessage(code=error.code, message=error.message, turn_id=turn.turn_id)
                )
            finally:
                sentences.put_nowait(None)
            await speaker
            turn.generating = False
            if turn.spoken:
                await self.services.store.append(
                    self.grant.session_id, "assistant", " ".join(turn.spoken), turn.turn_id
                )
            report = timings.report()
            self.outbox.put(p.ResponseEnd(turn_id=turn.turn_id, timings=report or None))
            if report:
                self.log.info("agent turn timings", extra={"ctx": {**ctx["ctx"], **report}})
                if self.services.on_turn_timings:
                    self.services.on_turn_timings(self.grant.session_id, report)
            if not turn.audio_sent:
                self._finish_agent_playback(turn)
        if hangup:
            self._spawn(self._hang_up(turn), "hangup")

    async def _converse(
        self,
        turn: AgentTurn,
        event: WebhookEvent,
        sentences: asyncio.Queue[str | None],
        timings: TurnTimings,
    ) -> bool:
        """Stream the agent's answer into text, data and sentences to speak; True on hangup."""
        splitter = SentenceSplitter()
        hangup = False
        async for reply in self.services.agent.respond(event):
            timings.mark("webhook_first_event")
            if isinstance(reply, AgentSpeech):
                self.outbox.put(p.ResponseText(content=reply.text, turn_id=turn.turn_id))
                for sentence in splitter.feed(reply.text):
                    sentences.put_nowait(sentence)
                if reply.text.rstrip().endswith((".", "!", "?")):
                    # An event boundary after a full stop is a sentence boundary too.
                    rest = splitter.flush()
                    if rest:
                        sentences.put_nowait(rest)
            elif isinstance(reply, AgentData):
                self.outbox.put(p.ResponseData(content=reply.content, turn_id=turn.turn_id))
            elif isinstance(reply, AgentHangup):
                hangup = True
            elif isinstance(reply, AgentEnd):
                break
        rest = splitter.flush()
        if rest:
            sentences.put_nowait(rest)
        return hangup

    async def _speak(
        self, turn: AgentTurn, sentences: asyncio.Queue[str | None], timings: TurnTimings
    ) -> None:
        delta = 0
        playback_start: float | None = None  # when the listener started hearing this answer
        queued_seconds = 0.0  # of audio sent so far
        while (sentence := await sentences.get()) is not None:
            turn.spoken.append(sentence)
            # Due now for the first sentence; later ones when what came before will have played.
            due = None if playback_start is None else playback_start + queued_seconds
            async for pcm in self.services.tts.synthesize(sentence, due=due):
                playback_start = playback_start or time.monotonic()
                queued_seconds += len(pcm) / 2 / self.services.tts.sample_rate
                delta += 1
                self.outbox.put(
                    p.ResponseAudio(
                        content=base64.b64encode(pcm).decode("ascii"),
                        turn_id=turn.turn_id,
                        delta_id=f"{turn.turn_id}-{delta}",
                    )
                )
                if not turn.audio_sent:
                    turn.audio_sent = True
                    timings.mark("first_audio")

    def _finish_agent_playback(self, turn: AgentTurn) -> None:
        if not turn.played.is_set():
            turn.played.set()
            self.outbox.put(p.TurnEnd(role="assistant", turn_id=turn.turn_id))

    async def _interrupt_agent(self, reason: str) -> None:
        turn = self.agent_turn
        if turn is None or not turn.active:
            return
        dropped = self.outbox.drop_turn_audio(turn.turn_id)
        await self._cancel_agent_turn()
        self.log.info(
            "agent interrupted (%s); %d queued audio chunks dropped",
            reason,
            dropped,
            extra={"ctx": {"session": self.grant.session_id, "turn": turn.turn_id}},
        )

    async def _cancel_agent_turn(self) -> None:
        turn, self.agent_turn = self.agent_turn, None
        if turn is None:
            return
        if turn.task is not None and not turn.task.done():
            turn.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await turn.task
        if turn.spoken and turn.generating:
            await self.services.store.append(
                self.grant.session_id, "assistant", " ".join(turn.spoken), turn.turn_id
            )
        turn.generating = False
        turn.played.set()

    async def _hang_up(self, turn: AgentTurn) -> None:
        """The agent ended the session: let its last words play, then close."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(turn.played.wait(), HANGUP_PLAYBACK_GRACE_S)
        await self.outbox.drain()
        await self._close(p.CloseCode.SESSION_ENDED, "the agent ended the session")

    async def _notify_agent(self, kind: str) -> None:
        """Tell the agent about a lifecycle event whose answer nobody will hear."""
        try:
            async with asyncio.timeout(2):
                async for _ in self.services.agent.respond(await self._event(kind)):
                    pass
        except (AgentError, TimeoutError) as error:
            self.log.debug("agent %s notification failed: %s", kind, error)
