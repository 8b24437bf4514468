"""One voice session: the conversation between a connected client and the agent.

The data's path, in order:

    client.audio ─► resample to 16 kHz ─► TurnDetector (VAD + endpointing)
                                              │ speech started / ended
                                              ▼
                         UserTurn: Utterance (streaming STT) ─► user.transcript.*
                                              │ final text
                                              ▼
                 AgentTurn (agent_turn.py): webhook (SSE) ─► sentences ─► TTS ─► paced
                                            response.text / .data / .audio ─► response.end

The session dispatches; each turn's state lives in its own object (`UserTurn`, `AgentTurn`),
as an explicit state. Push-to-talk triggers and client `vad_events` drive the same machinery
as the VAD.

Barge-in. Speech that starts while the agent is answering (and the session allows
interruption) *holds* the agent turn before the user's `turn.start` goes out: from then on
nothing of it is sent. If the user's words reach `interruption_min_words`, the interruption is
confirmed and the agent turn cancelled as a unit. If the speech ends without them and
`false_interruption_s` has passed since it started (a cough, a door, an "mm"), the answer
resumes where playback stopped, as a new assistant turn. The client may set the window for its
session (`client.settings`). Push-to-talk and typed text interrupt
at once.

Echo. In automatic mode the microphone goes through the session's `EchoGuard` (echo.py) before
the VAD: every chunk of agent audio sent is its reference, placed at the stream time it is due
to play (the pacing's planned play time), so the agent's own voice coming back through the
user's speakers is removed and never starts a user turn; a person talking over it still does.

Speculative answers (speculation.py, `PipelineServices.speculative`). At a pause in the user's
speech whose interim transcript looks whole, the agent is asked at once (`speculative: true`)
and its first sentence synthesised, nothing sent; the turn's end with the same words releases
it, the user going on (or other final words) cancels it and tells the agent (`message.cancel`).

Bounds. `client.audio` is paced to real time plus a burst (`AudioPacer`, pacing.py): the excess
is dropped with an `audio_too_fast` error, and a client that keeps flooding is closed (4009).
An utterance's recognition backlog is bounded in bytes (`Utterance`); at most `queued_messages`
agent turns wait for the one answering. `drain()` (SIGTERM) starts nothing new and lets the
answer being spoken finish, or cuts it at the deadline and keeps what was heard.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import enum
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import ClassVar

from layercode_client import protocol as p
from layercode_client.errors import ProtocolError, UnknownMessageType

from ..errors import AgentError
from .agent import WebhookAgent
from .agent_turn import AgentState, AgentTurn, Pacing, new_turn_id
from .audio import RATE, Resampler
from .echo import EchoGuard, EchoSettings
from .keys import SessionGrant
from .outbox import Outbox
from .pacing import ACCEPT, DEFAULT_BURST_S, DEFAULT_FLOOD_S, DROP_AND_WARN, FLOOD, AudioPacer
from .playback import SentAudio
from .session_history import SessionHistory
from .speculation import Speculation, looks_complete, same_words
from .stores import HistoryStore, StoreUnavailable, UnknownSession
from .stt import Recognizer, RecognizerPool
from .timing import StreamClock, TurnTimings
from .tts import TextToSpeech
from .turns import (
    SpeechAudio,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    TurnDetector,
    TurnSettings,
    WordsWanted,
)
from .webhook import MESSAGE_CANCEL, WebhookEvent

log = logging.getLogger("server.pipeline")

HANGUP_PLAYBACK_GRACE_S = 5.0
UTTERANCE_BACKLOG_EXTRA_S = 10.0  # recognition may fall this far behind a user turn
MAX_FALSE_INTERRUPTION_MS = 10_000
# How often the sentences heard of an answer being played are stored (`_checkpoint_heard`): at
# most one write per sentence, so a crash loses at most the sentence being played.
HEARD_CHECKPOINT_S = 0.25

__all__ = ["InterruptionSettings", "PipelineServices", "PipelineSession"]


@dataclass
class InterruptionSettings:
    """Barge-in policy; `false_interruption_s` 0 makes every interruption final at once."""

    false_interruption_s: float = 0.6
    min_words: int = 1  # words the interrupting speech must carry to count


@dataclass
class PipelineServices:
    """Process-wide parts, built once at start and shared by every session."""

    store: HistoryStore
    recognizers: RecognizerPool
    tts: TextToSpeech
    agent: WebhookAgent
    turn_settings: TurnSettings = field(default_factory=TurnSettings)
    interruptions: InterruptionSettings = field(default_factory=InterruptionSettings)
    pacing: Pacing = field(default_factory=Pacing)
    echo_settings: EchoSettings = field(default_factory=EchoSettings)
    audio_burst_s: float = DEFAULT_BURST_S  # client audio allowed ahead of real time
    audio_flood_s: float = DEFAULT_FLOOD_S  # dropped beyond it: a flooding client, closed
    queued_messages: int = 8  # client.response.text/data waiting for the agent, at most
    history_retry_s: float = 5.0  # a history store that failed is left alone this long
    loop_lag: Callable[[], float] | None = None  # the server's own lag, credited by the pacer
    make_detector: Callable[[TurnSettings], TurnDetector] = TurnDetector
    speculative: bool = False  # answer at a pause, before the turn is over (speculation.py)
    words_at_ask: bool = True  # a look's words cover the audio until the ask (Utterance)
    final_from_look: bool = True  # a turn ended at a look: its words are the final (Utterance)
    on_turn_timings: Callable[[str, dict], None] | None = None  # for benchmarks

    @property
    def utterance_backlog_bytes(self) -> int:
        """An utterance's recognition backlog bound: the burst a client may send, plus 10 s."""
        return int((self.audio_burst_s + UTTERANCE_BACKLOG_EXTRA_S) * RATE * 2)


def _base64_size(content: str) -> int:
    """How many bytes `content` decodes to, if it is base64 (what pacing counts, before the
    decode; invalid base64 is refused by the decode that follows)."""
    size = len(content) // 4 * 3
    return max(0, size - content[-2:].count("="))


class Utterance:
    """One user utterance being recognised.

    Audio waits in a queue so the socket never waits on speech recognition. The queue is
    bounded in bytes (`max_bytes`: about the audio pacer's burst allowance plus 10 s): a feed
    that would pass it is refused (`feed` returns False) and the session ends the utterance
    there, early. Audio is never dropped from the middle of an utterance.

    The words asked for at a look (`words_now`) are those of the audio fed until the ask: the
    recogniser answers once it has decoded that much, before the silence fed since. Under load
    a recogniser decodes about as fast as audio arrives, and waiting for "everything fed" chased
    the live stream: the words of a look came seconds late (docs/scaling.md). `words_at_ask`
    False (STT_WORDS_AT_ASK) waits for everything fed, as before.

    A turn that ends at a pause whose look asked for the words, with no voice since
    (`voice_resumed`), has them as its final transcript (`final_from_look`,
    STT_FINAL_FROM_LOOK): what was fed after the ask is the pause's silence, and under load
    the final transcript waited for the recogniser to decode it (a p95 of ~0.9 s at ten
    talkers on two cores). On bench/wer.py's questions a hypothesis taken 0.3 s into the
    silence was the final one word for word on clean speech, and in noise the final only added
    words heard in the noise (docs/scaling.md). False: the final waits for all audio fed.
    """

    def __init__(
        self,
        pool: RecognizerPool,
        on_interim: Callable[[str], None],
        max_bytes: int,
        words_at_ask: bool = True,
        final_from_look: bool = True,
    ):
        self.max_bytes = max_bytes
        self._words_at_ask = words_at_ask
        self._final_from_look = final_from_look
        self._look_words: str | None = None  # the last look's words, while no voice came since
        self._pending: deque[bytes] = deque()
        self._fed = 0  # bytes fed so far, and of them handed to the recogniser
        self._sent = 0
        self._finishing = False
        self._wake = asyncio.Event()
        self._decoded = asyncio.Event()  # everything fed so far has been decoded
        self._decoded.set()
        self.latest = ""  # the latest interim hypothesis
        # `words_now` callers (one per pause at most), each with the bytes fed when it asked
        self._asked: list[tuple[asyncio.Future, int]] = []
        self._recognizer: Recognizer | None = None  # once a decoder is claimed
        self.trace: dict[str, float] = {}  # seconds by timing.STAGES name (words, final)
        self._task = asyncio.create_task(self._recognise(pool, on_interim), name="stt")

    def feed(self, pcm: bytes) -> bool:
        """Queue `pcm`; False (nothing queued) when it would pass `max_bytes`."""
        if not pcm:
            return True
        if self._queued + len(pcm) > self.max_bytes:
            return False
        self._pending.append(pcm)
        self._fed += len(pcm)
        self._decoded.clear()
        self._wake.set()
        return True

    async def hypothesis(self) -> str:
        """The interim transcript of all audio fed so far, once it is decoded."""
        decoded = asyncio.ensure_future(self._decoded.wait())
        try:
            await asyncio.wait([decoded, self._task], return_when=asyncio.FIRST_COMPLETED)
        finally:
            decoded.cancel()
        return self.latest

    async def words_now(self) -> str:
        """The words of all audio fed so far, asked of the recogniser once it has decoded it:
        the periodic interim (`latest`) may lack the last word spoken (stt.py)."""
        asked = asyncio.get_running_loop().create_future()
        self._asked.append((asked, self._fed if self._words_at_ask else -1))
        self._add_trace("words_behind", self._queued / (2 * RATE))
        self._wake.set()
        self._hurry(True)
        since = self._trace_mark()
        try:
            await asyncio.wait([asked, self._task], return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not asked.done():
                asked.cancel()
            self._trace("words", since)
        if asked.cancelled():
            return self.latest
        self._look_words = asked.result()
        return self._look_words

    def voice_resumed(self) -> None:
        """The voice came back after a pause: the last look's words no longer cover it."""
        self._look_words = None

    async def finish(self) -> str:
        self._finishing = True
        self._add_trace("final_behind", self._queued / (2 * RATE))
        since = self._trace_mark()
        try:
            if self._final_from_look and self._look_words is not None:
                await self.cancel()  # the silence since the look is not decoded
                return self._look_words.strip()
            self._wake.set()
            self._hurry(True)
            return await self._task
        finally:
            self._trace("final", since)

    def _hurry(self, urgent: bool) -> None:
        """Someone waits for the words (or no longer): the recogniser's priority lane (stt.py)."""
        if self._recognizer is not None:
            self._recognizer.urgent = urgent or self._finishing

    @property
    def _queued(self) -> int:
        """Bytes fed and not yet decoded (queued here or in the recogniser)."""
        recognizer = self._recognizer
        return self._fed - (recognizer.decoded_bytes if recognizer is not None else 0)

    def _add_trace(self, stage: str, seconds: float) -> None:
        self.trace[stage] = self.trace.get(stage, 0.0) + seconds

    def _trace_mark(self) -> tuple[float, float, float]:
        recognizer = self._recognizer
        if recognizer is None:
            return time.monotonic(), 0.0, 0.0
        return time.monotonic(), recognizer.waited_s, recognizer.ran_s

    def _trace(self, stage: str, since: tuple[float, float, float]) -> None:
        """How long `stage` took since `since`, and the recogniser's queue and work in it."""
        started, waited, ran = since
        now = self._trace_mark()
        for name, value in ((stage, now[0] - started), (f"{stage}_queue", now[1] - waited),
                            (f"{stage}_work", now[2] - ran)):  # fmt: skip
            self.trace[name] = self.trace.get(name, 0.0) + value

    async def cancel(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def _wanted(self) -> int | None:
        """The bytes fed that the earliest open ask for words waits for (all fed so far with
        words-at-ask off, whose asks are marked -1); None: nobody asks."""
        wanted = min((fed for asked, fed in self._asked if not asked.done()), default=None)
        return self._fed if wanted == -1 else wanted

    def _take(self) -> bytes:
        """The audio queued for the recogniser, up to the earliest ask's (words at ask)."""
        wanted = self._wanted()
        pieces = []
        while self._pending and (wanted is None or self._sent < wanted):
            pieces.append(self._pending.popleft())
            self._sent += len(pieces[-1])
        return b"".join(pieces)

    async def _recognise(self, pool: RecognizerPool, on_interim: Callable[[str], None]) -> str:
        def heard(interim: str) -> None:
            self.latest = interim
            on_interim(interim)

        claiming = time.monotonic()
        async with pool.utterance() as recognizer:
            self._add_trace("stt_claim", time.monotonic() - claiming)
            self._recognizer = recognizer
            self._hurry(bool(self._asked))  # asked, or finishing, before the decoder came
            while True:
                self._asked = [(a, fed) for a, fed in self._asked if not a.done()]
                if not self._pending and not self._finishing and not self._asked:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                wanted = self._wanted()
                if wanted is not None and self._sent >= wanted:  # all fed before the ask
                    words, covered = await recognizer.words(), self._sent
                    for asked, fed in self._asked:
                        if fed <= covered and not asked.done():  # -1: whenever it came
                            asked.set_result(words)
                    self._hurry(any(not a.done() for a, _ in self._asked))
                    continue
                if not self._pending:
                    break  # finishing: everything fed is decoded
                # Whatever queued up while the recogniser was busy goes in one feed, and what
                # comes while it runs joins it; with words asked for, only what was fed before
                # the ask: they come first.
                await recognizer.feed(self._take(), more=self._take, on_interim=heard)
                if not self._pending:
                    self._decoded.set()
            return (await recognizer.finish()).strip()


class UserState(enum.Enum):
    SPEAKING = "speaking"  # audio flows to the recogniser
    FINISHING = "finishing"  # the turn ended; the final transcript is on its way
    DONE = "done"


class UserTurn:
    """One user turn: its id, its recogniser, its timings, the words heard so far."""

    def __init__(self, utterance: Utterance, started: float):
        self.turn_id = new_turn_id()
        self.utterance = utterance
        self.started = started
        self.state = UserState.SPEAKING
        self.timings = TurnTimings()
        self.interim_counter = 0
        self.words = 0  # in the latest hypothesis
        self.pauses = 0  # pauses and resumptions so far: a speculation belongs to one pause


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
        self.outbox = Outbox(send_text, number=self._number_data)
        self.log = logging.LoggerAdapter(log, {"ctx": {"session": grant.session_id}})
        # the conversation's turns; a store that fails is reported, not fatal
        self.history = SessionHistory(
            services.store, grant.session_id, self.outbox.put, self.log,
            retry_s=services.history_retry_s,
        )  # fmt: skip
        self._resumed_data = False  # client.resume answered (once per connection)
        self._close = close
        self.clock = StreamClock(RATE)
        self.pacer = AudioPacer(
            self.config.input_sample_rate,
            burst_s=services.audio_burst_s,
            flood_s=services.audio_flood_s,
            lag=services.loop_lag,
        )
        self.resampler = (
            Resampler(self.config.input_sample_rate, RATE)
            if self.config.input_sample_rate != RATE
            else None
        )
        self.detector = services.make_detector(services.turn_settings)
        self.user_turn: UserTurn | None = None
        self.agent_turn: AgentTurn | None = None  # the one answering (or last answered)
        self.agent_lock = asyncio.Lock()
        self.waiting_turns: list[AgentTurn] = []  # made, waiting for the one before (bounded)
        self.draining = False  # the server is stopping: finish the answer, start nothing
        self._playing: asyncio.Task | None = None  # the agent turn's task: play, then record
        self.started = False
        self.ptt_held = False
        self.echo = EchoGuard(services.echo_settings)
        self._echo_placed: tuple[float, float] | None = None  # last reference: (ends, stream)
        self.interruptions = services.interruptions  # this session's, the client may change it
        self._ignoring_speech = False  # the VAD's current speech is ignored (cannot interrupt)
        self.speculation: Speculation | None = None  # an answer started at a pause, unsent
        self._detector_lock = asyncio.Lock()  # the detector's events are handled in order
        self._watched_decision = None  # the turn-end model's answer a task waits for
        self._tasks: set[asyncio.Task] = set()

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
                with self.pacer.holding():  # the client's audio waits meanwhile (pacing.py)
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
        await self.outbox.keep_unsent()
        if self.user_turn is not None:
            await self.user_turn.utterance.cancel()
            self.user_turn = None
        if self.agent_turn is not None:
            await self.agent_turn.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._notify_agent("session.end")
        await self.history.close()  # writes kept while the store was away
        self.log.info("session ended")

    async def drain(self, deadline: float) -> None:
        """The server is stopping: let the answer being spoken finish, until `deadline`.

        From now on no agent turn starts and new speech and `client.response.*` are ignored.
        The current answer is awaited through its generation and playback; if `deadline`
        (`loop.time()`) cuts it, it is cancelled, and the history keeps only what was heard.
        """
        self.draining = True
        task = self._playing
        if task is None or task.done():
            return
        remaining = deadline - asyncio.get_running_loop().time()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), max(0.0, remaining))
        if not task.done():  # cut by the deadline: cancelled, and recorded as heard
            await self._cancel_agent(reason="the server is stopping")

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
        # Paced before it is decoded: audio beyond real time costs a length, not a decode.
        if not await self._admit(_base64_size(message.content) // 2):
            return
        try:
            pcm = base64.b64decode(message.content, validate=True)
        except (binascii.Error, ValueError):
            error = p.ErrorMessage(code="protocol_error", message="client.audio is not base64")
            self.outbox.put(error)
            return
        if len(pcm) % 2:
            pcm = pcm[:-1]
        if self.draining:
            return  # the server is stopping: no new turns
        await self._start()
        if self.resampler is not None:
            pcm = self.resampler.process(pcm)
        self.clock.advance(len(pcm) // 2, time.monotonic())
        if self.config.push_to_talk:
            await self._feed_user(pcm)
            return
        async with self._detector_lock:
            await self._on_detector_events(self.detector.feed(self.echo.clean(pcm)))
        self._watch_decision()

    async def _on_detector_events(self, events) -> None:
        for event in events:
            if isinstance(event, SpeechStarted):
                await self._speech_started(event.preroll)
            elif isinstance(event, SpeechAudio):
                if not self._ignoring_speech:
                    await self._feed_user(event.pcm)
            elif isinstance(event, SpeechPaused):
                if not self._ignoring_speech:
                    self._speech_paused()
            elif isinstance(event, SpeechResumed):
                await self._speech_resumed()
            elif isinstance(event, WordsWanted):
                self._spawn(self._tell_words(event.look), "turn-end-words")
            elif isinstance(event, SpeechEnded):
                if self._ignoring_speech:
                    self._ignoring_speech = False
                else:
                    await self._user_finished(event.speech_end_s, event.rule)

    def _watch_decision(self) -> None:
        """The turn-end model answers in a thread (turns.py): act on its answer the moment it
        comes, not when the next chunk of audio arrives (up to a chunk, ~100 ms, later)."""
        decision = self.detector.pending_decision
        if decision is None or decision is self._watched_decision:
            return
        self._watched_decision = decision
        self._spawn(self._apply_decision(decision), "turn-end-decision")

    async def _apply_decision(self, decision) -> None:
        try:
            await asyncio.wrap_future(decision)  # cancelling this task cancels the look too
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():
                raise
            return  # the look was dropped: the voice went on before the model took it
        except Exception:  # a failure is the detector's to log
            pass
        async with self._detector_lock:
            await self._on_detector_events(self.detector.feed(b""))

    async def _tell_words(self, look: int) -> None:
        """The turn-end model heard an end: tell the detector the words of all audio so far
        (not the last interim, which may lack the last word), to confirm or overrule it."""
        turn = self.user_turn
        words = await turn.utterance.words_now() if turn is not None else ""
        async with self._detector_lock:
            self.detector.hint(words, look)
            await self._on_detector_events(self.detector.feed(b""))

    async def _admit(self, samples: int) -> bool:
        """Real-time pacing (pacing.py): audio beyond real time plus the burst is dropped, never
        queued; the first drop of an episode is reported, and a client that keeps flooding is
        closed (4009)."""
        verdict = self.pacer.admit(samples)
        if verdict == ACCEPT:
            return True
        if verdict == FLOOD:
            self.log.warning("closing: client audio keeps arriving faster than real time")
            await self._close(p.CloseCode.AUDIO_FLOOD, "client.audio far faster than real time")
        elif verdict == DROP_AND_WARN:
            seconds = self.services.audio_burst_s
            error = f"client.audio is arriving faster than real time (beyond a {seconds:g} s "
            error += "burst): it is dropped until the client slows down"
            self.outbox.put(p.ErrorMessage(code="audio_too_fast", message=error))
            self.log.warning("audio_too_fast: %s", self.pacer.report())
        return False

    async def on_turn_start(self, message: p.TriggerTurnStart) -> None:
        if self.ptt_held or self.draining:
            return
        self.ptt_held = True
        await self._start()
        await self._user_started(b"", force=True)

    async def on_turn_end(self, message: p.TriggerTurnEnd) -> None:
        if not self.ptt_held:
            return
        self.ptt_held = False
        await self._user_finished(self.clock.seconds, "push-to-talk")

    async def on_vad(self, message: p.VadEvent) -> None:
        """Client-side VAD hints (the official SDK): the end of speech ends the turn now."""
        if message.event == "vad_end" and not self.config.push_to_talk:
            for event in self.detector.force_end():
                if self._ignoring_speech:
                    self._ignoring_speech = False
                else:
                    await self._user_finished(event.speech_end_s, event.rule)

    async def on_replay_finished(self, message: p.ReplayFinished) -> None:
        turn = self.agent_turn
        if turn is not None:
            turn.playback_finished(message.last_delta_id_played)

    async def on_playback_interrupted(self, message: p.PlaybackInterrupted) -> None:
        """This project's addition: where the client's playback stopped on a barge-in."""
        turn = self.agent_turn
        if turn is not None and turn.state is AgentState.HELD:
            turn.report_played(message.turn_id, message.last_delta_id_played, message.played_ms)

    async def on_resume(self, message: p.ClientResume) -> None:
        """This project's addition: the client names the last `response.data` it delivered;
        the conversation's later ones go out again first, in order (docs/protocol.md,
        "Reconnecting"). Once per connection: a repeat would only queue the same again."""
        if self._resumed_data:
            return
        self._resumed_data = True
        try:
            kept = await self.services.store.data_since(
                self.grant.session_id, max(0, message.last_data_seq)
            )
        except StoreUnavailable as error:
            self.log.warning("response.data not sent again: %s", error)
            self.outbox.put(p.ErrorMessage(code="store_unavailable", message=(
                "the data messages sent while you were away could not be read; some may be "
                "missing")))  # fmt: skip
            return
        for record in kept:
            self.outbox.put(
                p.ResponseData(content=record.content, turn_id=record.turn_id, seq=record.seq)
            )
        if kept:
            self.log.info("sent %d data messages again", len(kept))

    async def _number_data(self, message: p.ResponseData) -> None:
        """Keep a `response.data` in the conversation's store as it goes out, numbered, for a
        client that reconnects. A store that fails leaves it unnumbered: sent, not kept."""
        try:
            message.seq = await self.services.store.append_data(
                self.grant.session_id, message.content, message.turn_id
            )
        except (StoreUnavailable, UnknownSession) as error:
            self.log.warning("response.data sent without a seq, not kept: %s", error)

    async def on_settings(self, message: p.ClientSettings) -> None:
        """This project's addition: the client sets this session's false-interruption window
        (the SDK's `vadResumeDelay`)."""
        window = message.false_interruption_ms
        if window is None:
            return
        if not 0 <= window <= MAX_FALSE_INTERRUPTION_MS:
            error = f"false_interruption_ms must be 0..{MAX_FALSE_INTERRUPTION_MS}, not {window}"
            self.outbox.put(p.ErrorMessage(code="protocol_error", message=error))
            return
        self.interruptions = dataclasses.replace(
            self.interruptions, false_interruption_s=window / 1000
        )

    async def on_text(self, message: p.ClientResponseText) -> None:
        text = message.content.strip()
        if not text or self.draining:
            return
        await self._start()
        waiting = self.waiting_turns[-1] if self.waiting_turns else None
        if waiting is not None and waiting.event.type == "message" and waiting.event.text:
            # Typed while the turn for the last message waits: one answer to both.
            waiting.event.text += "\n" + text
            self.outbox.put(p.UserTranscript(content=text, turn_id=waiting.turn_id))
            await self.history.append("user", text, waiting.turn_id)
            return
        if not self._room_for_a_turn():
            return
        await self._cancel_agent(reason="typed text")
        turn_id = new_turn_id()
        self.outbox.put(p.UserTranscript(content=text, turn_id=turn_id))
        event = await self._event("message", turn_id=turn_id, text=text)  # history before it
        await self.history.append("user", text, turn_id)
        self._start_agent_turn(event, None)

    async def on_data(self, message: p.ClientResponseData) -> None:
        if self.draining:
            return
        await self._start()
        if self._room_for_a_turn():
            self._start_agent_turn(await self._event("data", data=message.data), None)

    def _room_for_a_turn(self) -> bool:
        """At most `queued_messages` agent turns wait; past that a message is refused."""
        if len(self.waiting_turns) < self.services.queued_messages:
            return True
        limit = self.services.queued_messages
        error = f"{limit} messages are already waiting for the agent; this one was dropped"
        self.outbox.put(p.ErrorMessage(code="too_many_messages", message=error))
        return False

    _handlers: ClassVar[dict] = {
        p.ClientReady: on_ready,
        p.ClientAudio: on_audio,
        p.TriggerTurnStart: on_turn_start,
        p.TriggerTurnEnd: on_turn_end,
        p.VadEvent: on_vad,
        p.ReplayFinished: on_replay_finished,
        p.PlaybackInterrupted: on_playback_interrupted,
        p.ClientSettings: on_settings,
        p.ClientResume: on_resume,
        p.ClientResponseText: on_text,
        p.ClientResponseData: on_data,
    }

    # -- user turns ----------------------------------------------------------------------------

    async def _start(self) -> None:
        """The first sign of a live client starts the session: the agent may speak first."""
        if self.started:
            return
        self.started = True
        history = [t.to_dict() for t in await self.history.turns()]
        event = await self._event("session.start")
        event.extra = {"resumed": self.grant.resumed, "history": history}
        self._start_agent_turn(event, None)

    async def _speech_started(self, preroll: bytes) -> None:
        """The VAD heard speech start (echo already removed from what it heard)."""
        await self._user_started(preroll)
        if self.user_turn is None:
            self._ignoring_speech = True

    async def _user_started(self, preroll: bytes, *, force: bool = False) -> None:
        await self._drop_speculation("a new user turn")
        agent = self.agent_turn
        if agent is not None and agent.interruptible:
            if not (self.config.can_interrupt or force):
                self.log.debug("user speech ignored: the agent cannot be interrupted")
                return
            policy = self.interruptions
            if force or policy.false_interruption_s <= 0:
                await self._cancel_agent(reason="push-to-talk" if force else "barge-in")
            else:
                agent.hold()  # before turn.start: nothing of it may follow
                self.echo.drop_reference_after(self.clock.seconds)  # the client stops playing
                self.log.info("agent held: the user may be interrupting",
                              extra={"ctx": {"turn": agent.turn_id}})  # fmt: skip
        if self.user_turn is not None:
            await self.user_turn.utterance.cancel()
        utterance = Utterance(
            self.services.recognizers,
            self._send_interim,
            self.services.utterance_backlog_bytes,
            self.services.words_at_ask,
            self.services.final_from_look,
        )
        self.user_turn = turn = UserTurn(utterance, time.monotonic())
        self.outbox.put_urgent(p.TurnStart(role="user", turn_id=turn.turn_id))
        utterance.feed(preroll)

    async def _feed_user(self, pcm: bytes) -> None:
        """The user's audio to the recogniser; a full backlog ends the turn early."""
        turn = self.user_turn
        if turn is None or turn.utterance.feed(pcm):
            return
        self.log.warning("user turn ended early: %.0f s of audio waiting for recognition",
                         turn.utterance.max_bytes / 2 / RATE,
                         extra={"ctx": {"turn": turn.turn_id}})  # fmt: skip
        await self._user_finished(self.clock.seconds, "backlog")

    def _send_interim(self, text: str) -> None:
        turn = self.user_turn
        if turn is None:
            return
        turn.interim_counter += 1
        turn.words = len(text.split())
        self.outbox.put(
            p.UserTranscriptInterimDelta(
                content=text, turn_id=turn.turn_id, delta_counter=turn.interim_counter
            )
        )
        agent = self.agent_turn
        if agent is not None and agent.state is AgentState.HELD and self._enough_words(turn.words):
            self._spawn(self._cancel_agent(reason="barge-in confirmed"), "confirm-interruption")

    # -- speculative answers (speculation.py) ---------------------------------------------------

    def _speech_paused(self) -> None:
        turn = self.user_turn
        if not self.services.speculative or turn is None or self.speculation is not None:
            return
        turn.pauses += 1
        if self._may_speculate(turn, turn.pauses):
            self._spawn(self._speculate(turn, turn.pauses), "speculate")

    def _may_speculate(self, turn: UserTurn, pause: int) -> bool:
        """Still the same pause of the same turn, and no other answer is under way (a
        speculation never waits behind, nor supersedes, an answer being spoken)."""
        agent = self.agent_turn
        return (
            turn is self.user_turn
            and turn.pauses == pause
            and self.speculation is None
            and not self.draining
            and not self.waiting_turns
            and (agent is None or agent.finished)
        )

    async def _speculate(self, turn: UserTurn, pause: int) -> None:
        text = await turn.utterance.hypothesis()
        if not looks_complete(text) or not self._may_speculate(turn, pause):
            return
        event = await self._event("message", turn_id=new_turn_id(), text=text)
        if not self._may_speculate(turn, pause):
            return
        agent = self._start_agent_turn(event, None, speculative=True)
        if agent is not None:
            self.speculation = Speculation(turn, text, agent)
            self.log.info("speculating on %r", text, extra={"ctx": {"turn": agent.turn_id}})

    async def _speech_resumed(self) -> None:
        turn = self.user_turn
        if turn is not None:
            turn.pauses += 1  # a speculation still being prepared for the pause is dropped
            turn.utterance.voice_resumed()
        await self._drop_speculation("the user went on")

    async def _drop_speculation(self, reason: str) -> None:
        """Cancel the speculative answer as a unit (nothing of it was sent) and tell the agent."""
        speculation, self.speculation = self.speculation, None
        if speculation is None:
            return
        agent = speculation.agent
        await agent.cancel()
        self.log.info("speculation dropped (%s)", reason, extra={"ctx": {"turn": agent.turn_id}})
        self._spawn(self._notify_agent(MESSAGE_CANCEL, turn_id=agent.turn_id), "message-cancel")

    async def _confirm_speculation(self, turn: UserTurn, text: str) -> bool:
        """The turn ended with the words speculated on: release the answer already made."""
        speculation = self.speculation
        if (
            speculation is None
            or speculation.user_turn is not turn
            or speculation.agent.finished
            or not same_words(speculation.text, text)
        ):
            await self._drop_speculation("the final transcript differs")
            return False
        self.speculation = None
        agent = speculation.agent
        for name in ("speech_end", "endpoint", "transcript", "end_rule"):
            setattr(agent.timings, name, getattr(turn.timings, name))
        for name, seconds in turn.timings.stages.items():
            agent.timings.add_stage(name, seconds)
        await self.history.append("user", text, turn.turn_id)
        self.log.info("user said %r (answered speculatively)", text,
                      extra={"ctx": {"turn": turn.turn_id}})  # fmt: skip
        agent.release()
        return True

    def _enough_words(self, words: int) -> bool:
        return words >= max(1, self.interruptions.min_words)

    async def _user_finished(self, speech_end_s: float, rule: str = "") -> None:
        """The user's turn is over, ended by `rule` (turns.END_RULES, "push-to-talk" or
        "backlog"): its transcript, then the agent's answer."""
        turn, self.user_turn = self.user_turn, None
        if turn is None:
            return
        turn.state = UserState.FINISHING
        timings = turn.timings
        timings.speech_end = self.clock.wall_time_of(speech_end_s)
        timings.endpoint = time.monotonic()
        timings.end_rule = rule or None
        timings.add_stage("echo_work", self.echo.take_cpu_s())
        text = await turn.utterance.finish()
        turn.state = UserState.DONE
        timings.transcript = time.monotonic()
        self._trace_queues(turn)
        self.outbox.put(p.TurnEnd(role="user", turn_id=turn.turn_id))
        agent = self.agent_turn
        held = agent is not None and agent.state is AgentState.HELD
        if held and not self._enough_words(len(text.split())):
            await self._drop_speculation("a false interruption")  # none is made while held
            self.log.info("false interruption (%r): the agent goes on", text,
                          extra={"ctx": {"turn": turn.turn_id}})  # fmt: skip
            self._spawn(self._resume_after_window(agent, turn), "resume-agent")
            return
        if held:
            await self._cancel_agent(reason="barge-in confirmed")
        if not text:
            await self._drop_speculation("no words")
            self.log.info("user turn had no words", extra={"ctx": {"turn": turn.turn_id}})
            return
        counter = turn.interim_counter + 1
        self.outbox.put(
            p.UserTranscriptDelta(content=text, turn_id=turn.turn_id, delta_counter=counter)
        )
        self.outbox.put(p.UserTranscript(content=text, turn_id=turn.turn_id))
        if await self._confirm_speculation(turn, text):
            return
        await self._cancel_agent(reason="a new user message")  # e.g. one still streaming quietly
        event = await self._event("message", turn_id=turn.turn_id, text=text)  # history before
        await self.history.append("user", text, turn.turn_id)
        self.log.info("user said %r", text, extra={"ctx": {"turn": turn.turn_id}})
        self._start_agent_turn(event, timings)

    def _trace_queues(self, turn: UserTurn) -> None:
        """The turn's waits and work in the shared queues (timing.STAGES): its looks at the
        turn-end model, and the recogniser's words and final transcript."""
        for look in getattr(self.detector, "looks", ()):  # this turn's (cleared at its start)
            turn.timings.add_stage("model_queue", look.queued_s)
            turn.timings.add_stage("model_work", look.worked_s)
        for name, seconds in turn.utterance.trace.items():
            turn.timings.add_stage(name, seconds)

    async def _resume_after_window(self, agent: AgentTurn, turn: UserTurn) -> None:
        """Resume the held answer once the window since the speech started has passed —
        unless new speech has held it again meanwhile."""
        generation = agent.hold_generation
        window_end = turn.started + self.interruptions.false_interruption_s
        await asyncio.sleep(max(0.0, window_end - time.monotonic()))
        if agent.hold_generation == generation and self.user_turn is None:
            agent.resume()

    # -- agent turns ---------------------------------------------------------------------------

    async def _event(self, kind: str, **fields) -> WebhookEvent:
        history = None
        if kind == "message":
            history = [t.to_dict() for t in await self.history.turns()]
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

    def _start_agent_turn(
        self, event: WebhookEvent, timings: TurnTimings | None, *, speculative: bool = False
    ) -> AgentTurn | None:
        if self.draining:
            return None
        turn = AgentTurn(
            event,
            agent=self.services.agent,
            tts=self.services.tts,
            outbox=self.outbox,
            timings=timings,
            pacing=self.services.pacing,
            on_audio_sent=self._audio_sent,
            speculative=speculative,
        )
        self.waiting_turns.append(turn)
        self._spawn(self._run_agent_turn(turn), f"agent-{event.type}")
        return turn

    def _audio_sent(self, chunk: SentAudio) -> None:
        """Agent audio went out: the echo guard's reference, due when the pacing plans it
        to play, on the microphone's timeline.

        A chunk planned to follow the one before without a gap is placed right after it in
        stream time: mapping each due time through the clock separately would carry the
        jitter of the microphone's arrivals (tens of ms) into the reference, and a reference
        that jumps against the echo cannot be cancelled (measured in Chromium).
        """
        follows = self._echo_placed
        if follows is not None and abs(chunk.due - follows[0]) < 1e-6:
            due_stream_s = follows[1]
        else:
            due_stream_s = self.clock.stream_time_of(chunk.due)
        self.echo.add_reference(chunk.pcm, due_stream_s)
        self._echo_placed = (chunk.ends, due_stream_s + chunk.duration)

    async def _run_agent_turn(self, turn: AgentTurn) -> None:
        """Answer once the turn before has answered; record what the listener heard.

        Turns answer one at a time (the lock), but the next may start while the last one's
        audio is still playing: it then supersedes it.
        """
        try:
            async with self.agent_lock:
                self.waiting_turns.remove(turn)
                if self.draining:
                    turn.abandon()
                    return
                if self.agent_turn is not None:
                    await self.agent_turn.supersede()
                self.agent_turn = turn
                task = self._spawn(self._play_agent_turn(turn), "agent-turn")
                self._playing = task
                answered = asyncio.ensure_future(turn.answered.wait())
                try:
                    await asyncio.wait([task, answered], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    answered.cancel()
            if turn.state is not AgentState.CANCELLED:
                self._report_timings(turn)
                if turn.hangup:
                    self._spawn(self._hang_up(turn), "hangup")
            await task  # until its audio has played
        except asyncio.CancelledError:
            if turn in self.waiting_turns:
                self.waiting_turns.remove(turn)
            turn.abandon()  # cancelled by turn.cancel() or the session's end
            raise

    def _report_timings(self, turn: AgentTurn) -> None:
        report = turn.timings.report()
        if report:
            self.log.info("agent turn timings", extra={"ctx": {"turn": turn.turn_id, **report}})
            if self.services.on_turn_timings:
                self.services.on_turn_timings(self.grant.session_id, report)

    async def _play_agent_turn(self, turn: AgentTurn) -> None:
        checkpoints = self._spawn(self._checkpoint_heard(turn), "heard-checkpoints")
        try:
            await turn.run()
        finally:
            checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checkpoints
            await self._record(turn)

    async def _checkpoint_heard(self, turn: AgentTurn) -> None:
        """While the answer plays, keep the sentences heard to their end in the history, marked
        interrupted: a node killed mid-answer (SIGKILL runs nothing after it) leaves the history
        holding what was heard — up to the last whole sentence — never the answer as said in
        full. `_record` replaces it with the final text when the turn ends (docs/scaling.md)."""
        stored = ""
        while True:
            await asyncio.sleep(HEARD_CHECKPOINT_S)
            text = turn.heard_sentences()
            if text == stored:
                continue
            try:
                await self.history.record("assistant", text, turn.turn_id, interrupted=True)
                stored = text
            except UnknownSession:  # the conversation was deleted meanwhile
                return

    async def _record(self, turn: AgentTurn) -> None:
        """The assistant's turn in the history holds only the words the listener heard (it
        replaces the turn's checkpoint, or removes it when nothing was heard after all)."""
        record = self.history.record(
            "assistant", turn.heard_text(), turn.turn_id, interrupted=turn.interrupted
        )
        await asyncio.shield(record)  # the session ending meanwhile must not lose it

    async def _cancel_agent(self, reason: str) -> None:
        if self.speculation is not None:
            await self._drop_speculation(reason)
        turn = self.agent_turn
        if turn is None or turn.finished:
            return
        await turn.cancel()
        self.echo.drop_reference_after(self.clock.seconds)  # what was not played never will be
        self.log.info(
            "agent turn cancelled (%s) after %.2f s heard",
            reason,
            turn.heard_seconds(),
            extra={"ctx": {"session": self.grant.session_id, "turn": turn.turn_id}},
        )

    async def _hang_up(self, turn: AgentTurn) -> None:
        """The agent ended the session: let its last words play, then close."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(turn.played.wait(), HANGUP_PLAYBACK_GRACE_S)
        await self.outbox.drain()
        await self._close(p.CloseCode.SESSION_ENDED, "the agent ended the session")

    async def _notify_agent(self, kind: str, **fields) -> None:
        """Tell the agent about an event whose answer nobody will hear."""
        try:
            async with asyncio.timeout(2):
                async for _ in self.services.agent.respond(await self._event(kind, **fields)):
                    pass
        except (AgentError, TimeoutError) as error:
            self.log.debug("agent %s notification failed: %s", kind, error)
