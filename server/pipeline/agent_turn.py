"""One agent turn as one unit of work: it owns every task it starts and is cancelled as a whole.

    webhook (SSE) ─► sentences ─► synthesis ─► pacing ─► Outbox
     _converse        (bounded     _synthesise  _pace
                       queue)

The three stages run in one `asyncio.TaskGroup` inside the turn's single task, so `cancel()`
closes the webhook stream, stops synthesis and drops what was not sent, in one call. Its state
is one `AgentState`, not a combination of flags on the session.

Audio is paced: a chunk goes out once less than `lead_s` of audio sent before it is still
waiting to play (a small lead that absorbs network jitter), so the browser never holds more
than that and what the listener has heard is known (`PlaybackTracker`). Synthesis runs at most
`synthesis_ahead_s` ahead of sending. The turn keeps its audio (32 KB a second of speech) and
the text span of each sentence in it, so it can:

- be *held* when the user may be interrupting (`hold`): from that moment nothing of it is sent
  (the outbox refuses its turn id), synthesis pauses, and the webhook's further words are
  buffered — bounded: the sentence queue fills and the stream is no longer read;
- *resume* (`resume`) when the interruption was false: the rest goes out as a new wire turn (a
  new `turn_id` and `turn.start`, since clients drop audio of an interrupted turn id), starting
  at the start of the word the listener was hearing;
- tell which words were heard (`heard_text`), estimated from the playback position within each
  sentence's audio and clamped to the audio actually sent — what the history keeps.

`replay_finished` ends the turn once all audio made so far has been sent, even while the
webhook stream is still open (QUIET: a slow tool call); more words then start a new wire turn.

A *speculative* turn (`speculative=True`: the user paused and their words so far look like a
whole question) starts SPECULATING: a held turn from its first moment. The webhook is called
and the first sentence synthesised, but nothing goes out — not even its `turn.start` — until
`release()` (the user's turn is confirmed over, with the same words); `cancel()` ends it as a
unit, and as nothing of it went out, nothing of it is heard or recorded (`heard_text` is "").
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from layercode_client import protocol as p

from ..errors import AgentError
from .agent import WebhookAgent
from .audio import RATE
from .playback import BYTES_PER_SECOND, PlaybackTracker, SentAudio
from .sentences import SentenceSplitter
from .timing import TurnTimings
from .tts import CHUNK_BYTES, TextToSpeech
from .webhook import AgentData, AgentEnd, AgentHangup, AgentSpeech, WebhookEvent

log = logging.getLogger("server.pipeline")


def new_turn_id() -> str:
    return "turn_" + secrets.token_hex(8)


class AgentState(enum.Enum):
    PENDING = "pending"  # waiting for the agent turn before it to finish
    SPEAKING = "speaking"  # answering: streaming, synthesising, sending, or its audio playing
    HELD = "held"  # the user may be interrupting: nothing is sent, synthesis is paused
    SPECULATING = "speculating"  # answering words at a pause: first sentence made, none sent
    QUIET = "quiet"  # all it said has played, but the webhook stream is still open
    DONE = "done"  # answered and played
    CANCELLED = "cancelled"  # interrupted for good, or the session ended


@dataclass
class Pacing:
    """How agent audio is paced and how far the stages may run ahead (all bounded)."""

    lead_s: float = 0.5  # audio sent ahead of the play position
    synthesis_ahead_s: float = 8.0  # audio made but not yet sent, at most
    queued_sentences: int = 16  # sentences waiting for synthesis; then the webhook waits
    held_messages: int = 64  # response.text / response.data held back while held
    # The answer's first sentence is made as two inferences, its opening phrase first, when a
    # clause break leaves this many words on both sides (sentences.first_clause; 0: the rule
    # before, long first sentences only) and the voice is idle as the answer starts (`idle`):
    # the first audio waits for the phrase alone.
    first_phrase_words: int = 2
    # The rest of a split first sentence is asked for with its phrase, due when the phrase
    # will have played (`PHRASE_S_PER_CHAR`), so the voice's earliest-deadline-first queue
    # makes it before the phrase has played, and the split is made busy or idle
    # (TTS_REST_BESIDE_PHRASE). False (the default: docs/scaling.md): as before, split only
    # while the voice is idle, the rest asked for once the phrase is made.
    rest_beside_phrase: bool = False


@dataclass
class Span:
    """A sentence and where its audio lies in the turn's audio (byte offsets)."""

    text: str
    start: int
    end: int


_WORD = re.compile(r"\S+")
# How long a phrase plays, per character of its text, at the least: Piper's joe voice says
# "You said:" (9 characters) in 0.65 s, 0.072 s a character. An estimate on the short side
# makes the rest due early rather than late (`Pacing.rest_beside_phrase`).
PHRASE_S_PER_CHAR = 0.05


class AgentTurn:
    def __init__(
        self,
        event: WebhookEvent,
        *,
        agent: WebhookAgent,
        tts: TextToSpeech,
        outbox,
        timings: TurnTimings | None = None,
        pacing: Pacing | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_audio_sent: Callable[[SentAudio], None] | None = None,
        speculative: bool = False,
    ):
        self.event = event
        self.speculative = event.speculative = speculative
        self.turn_id = event.turn_id or new_turn_id()  # the webhook's turn id, for good
        event.turn_id = self.turn_id
        self.wire_id = self.turn_id  # the id on the socket; a resumed answer gets a new one
        self.agent = agent
        self.tts = tts
        self.outbox = outbox
        self.timings = timings or TurnTimings()
        self.pacing = pacing or Pacing()
        self.clock = clock
        self.on_audio_sent = on_audio_sent  # the echo guard's reference
        self.state = AgentState.PENDING
        self.hangup = False
        self.interrupted = False
        self.audio = bytearray()  # everything synthesised, in order
        self.spans: list[Span] = []
        self.tracker = PlaybackTracker()
        self.sent = 0  # byte offset of the next audio to send
        self.heard = 0  # byte offset the listener is known (or estimated) to have reached
        self.synthesising = True  # sentences may still come out of synthesis
        self.answered = asyncio.Event()  # everything sent (response.end), or the turn is over
        self.played = asyncio.Event()  # set once the turn is DONE or CANCELLED
        self._sentences: asyncio.Queue[str | None] = asyncio.Queue(self.pacing.queued_sentences)
        self._held: list[p.Message] = []
        self._changed = asyncio.Event()
        self._wire_has_audio = False
        self._wire_ended = False  # response.end sent for the current wire id
        self._on_wire = False  # its turn.start went out: the listener may hear it
        self._delta = 0
        self._task: asyncio.Task | None = None
        self._making = False  # a sentence is being synthesised
        self._first_parts = 1  # the pieces the first sentence was cut into (SentenceSplitter)
        self._heard_known = False  # `heard` was fixed by a hold or the client's report
        self.hold_generation = 0

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def interruptible(self) -> bool:
        """Answering or playing: user speech now interrupts it."""
        return self.state in (AgentState.SPEAKING, AgentState.HELD)

    @property
    def finished(self) -> bool:
        return self.state in (AgentState.DONE, AgentState.CANCELLED)

    async def run(self) -> None:
        """The turn's one task: every stage runs inside it, and ends with it."""
        self._task = asyncio.current_task()
        if self.finished:
            return
        if self.speculative:
            self.state = AgentState.SPECULATING
        else:
            self._go_on_wire()
        try:
            async with asyncio.TaskGroup() as stages:
                stages.create_task(self._converse(), name="agent-webhook")
                stages.create_task(self._synthesise(), name="agent-tts")
                stages.create_task(self._pace(), name="agent-pacing")
        except asyncio.CancelledError:
            self._stop(AgentState.CANCELLED)
            raise
        self._stop(AgentState.DONE)

    async def cancel(self) -> None:
        """Stop everything at once: webhook stream, synthesis, pacing; nothing more is sent."""
        if self.state in (AgentState.SPEAKING, AgentState.HELD):
            self.interrupted = True
        self.outbox.drop_turn(self.wire_id)
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._stop(AgentState.CANCELLED)

    async def supersede(self) -> None:
        """A new agent turn starts: an answer whose audio may still be playing ends here;
        one still being held or streaming is cancelled."""
        if self.finished:
            return
        if self.state is AgentState.SPEAKING and self.answered.is_set():
            self._put(p.TurnEnd(role="assistant", turn_id=self.wire_id))
            self.state = AgentState.DONE
            self._notify()
            return
        await self.cancel()

    def release(self) -> bool:
        """A speculative turn's user turn is over, with the words it answered: go out now.

        What was held back (text, data) goes first, then the audio already made is paced out
        from its start. False when there was nothing to release (not speculating).
        """
        if self.state is not AgentState.SPECULATING:
            return False
        self._go_on_wire()
        self._send_held()
        return True

    def _go_on_wire(self) -> None:
        self.state = AgentState.SPEAKING
        self._on_wire = True
        self._put(p.TurnStart(role="assistant", turn_id=self.wire_id))

    def abandon(self) -> None:
        """The turn's task was cancelled from outside (the session ended): nothing more."""
        if not self.finished:
            if self.state is not AgentState.PENDING:
                self.interrupted = self.state in (AgentState.SPEAKING, AgentState.HELD)
                self.outbox.drop_turn(self.wire_id)
            self._stop(AgentState.CANCELLED)

    def _stop(self, state: AgentState) -> None:
        if not self.finished:
            self.state = state
        self.answered.set()
        if not self._heard_known:
            self.heard = max(self.heard, self.tracker.position(self.clock()))
        self.played.set()
        self._notify()

    # -- barge-in ------------------------------------------------------------------------------

    def hold(self) -> None:
        """The user may be interrupting: send nothing more until `resume` or `cancel`."""
        self.hold_generation += 1
        if self.state is AgentState.HELD:
            return
        self.heard = self.tracker.position(self.clock())
        self._heard_known = True
        self.outbox.drop_turn(self.wire_id)
        self.state = AgentState.HELD
        self._notify()

    def report_played(self, turn_id, last_delta_id, played_ms) -> None:
        """The client's interruption report: where its playback of `turn_id` stopped."""
        if turn_id is not None and str(turn_id) != self.wire_id:
            return  # about an earlier wire turn of this answer
        self.heard = self.tracker.position_reported(self.wire_id, last_delta_id, played_ms)
        self._heard_known = True

    def resume(self) -> bool:
        """The interruption was false: go on from the start of the word being heard.

        The rest goes out as a new wire turn. Returns False when there was nothing to resume.
        """
        if self.state is not AgentState.HELD:
            return False
        self._heard_known = False
        self._start_wire_turn(self.resume_offset())
        self._send_held()
        return True

    def _send_held(self) -> None:
        """What was held back (text, data) goes out under the wire turn id, before the audio."""
        held, self._held = self._held, []
        for message in held:
            message.turn_id = self.wire_id
            self._put(message)
        self._notify()

    def _start_wire_turn(self, offset: int) -> None:
        self.sent = offset
        self.wire_id = new_turn_id()
        self.tracker.restart()
        self._wire_has_audio = False
        self._wire_ended = False
        self._go_on_wire()

    def resume_offset(self) -> int:
        """The start of the word the listener was hearing when playback stopped."""
        for span in self.spans:
            if span.start <= self.heard < max(span.end, span.start + 1):
                words = list(_WORD.finditer(span.text))
                length = max(1, len(span.text))
                for word in reversed(words):
                    at = span.start + (span.end - span.start) * word.start() // length
                    if at <= self.heard:
                        return at - at % 2
                return span.start
        return min(self.heard, len(self.audio))

    # -- playback end --------------------------------------------------------------------------

    def playback_finished(self, last_delta_id) -> None:
        """`replay_finished`: the client played all it had. Ends the wire turn if nothing more
        is on its way — also while the webhook stream is still open (a slow tool call)."""
        if self.state is not AgentState.SPEAKING or not self._wire_has_audio:
            return
        reported = self.tracker.position_reported(self.wire_id, last_delta_id, None)
        self.heard = max(self.heard, reported)
        if self.sent < len(self.audio) or not self._sentences.empty() or self._making:
            return  # the player ran dry early; more audio is on its way
        self._put(p.TurnEnd(role="assistant", turn_id=self.wire_id))
        self.state = AgentState.QUIET if self.synthesising else AgentState.DONE
        self._notify()

    # -- the stages ----------------------------------------------------------------------------

    async def _converse(self) -> None:
        """The webhook's answer into text, data and sentences to speak."""
        splitter = SentenceSplitter(phrase_words=self._first_phrase_words())
        try:
            async for reply in self.agent.respond(self.event):
                self.timings.mark("webhook_first_event")
                if isinstance(reply, AgentSpeech):
                    await self._emit(p.ResponseText(content=reply.text, turn_id=self.wire_id))
                    await self._queue(splitter, splitter.feed(reply.text))
                    if reply.text.rstrip().endswith((".", "!", "?")):
                        # An event boundary after a full stop is a sentence boundary too.
                        await self._queue(splitter, splitter.flush())
                elif isinstance(reply, AgentData):
                    await self._emit(p.ResponseData(content=reply.content, turn_id=self.wire_id))
                elif isinstance(reply, AgentHangup):
                    self.hangup = True
                elif isinstance(reply, AgentEnd):
                    break
        except AgentError as error:
            log.warning("agent failed: %s (%s)", error.message, error.code,
                        extra={"ctx": {"turn": self.turn_id}})  # fmt: skip
            await self._emit(p.ErrorMessage(code=error.code, message=error.message,
                                            turn_id=self.wire_id))  # fmt: skip
        await self._queue(splitter, splitter.flush())
        await self._sentences.put(None)

    def _first_phrase_words(self) -> int:
        """`Pacing.first_phrase_words` when the rest is made beside its phrase, or while the
        voice is idle as the answer starts; else 0 (the first sentence whole): under load a
        rest asked for only once its phrase was made, queued behind other answers' first
        audio, came after the phrase had played (playback gaps at ten talkers:
        docs/scaling.md)."""
        if self.pacing.rest_beside_phrase or self.tts.idle:
            return self.pacing.first_phrase_words
        return 0

    async def _queue(self, splitter: SentenceSplitter, sentences: list[str]) -> None:
        """Sentences (the first one perhaps as its phrase and the rest) to synthesis, in order."""
        self._first_parts = splitter.first_parts or 1  # known before its pieces are taken
        for sentence in sentences:
            await self._sentences.put(sentence)

    async def _synthesise(self) -> None:
        ahead = int(self.pacing.synthesis_ahead_s * BYTES_PER_SECOND)
        while (sentence := await self._sentences.get()) is not None:
            self._making = True
            while self._may_not_synthesise(ahead):
                await self._wait()
            now = self.clock()
            due = now + self.tracker.ahead(now) + (len(self.audio) - self.sent) / BYTES_PER_SECOND
            if not self.spans and self._first_parts > 1 and self.pacing.rest_beside_phrase:
                await self._phrase_and_rest(sentence, due)
            else:
                await self._make(sentence, due)
            self._making = False
            self._notify()
        self.synthesising = False
        self._notify()

    async def _make(self, sentence: str, due: float, made: AsyncIterator[bytes] | None = None):
        """One sentence's audio onto the turn's, as it comes (`made`: already asked for)."""
        span = Span(sentence, len(self.audio), len(self.audio))
        self.spans.append(span)
        first = not self.spans[:-1]  # the first sentence: its queue and work are traced
        if made is None:
            made = self.tts.synthesize(
                sentence, due=due, on_timing=self._trace_tts if first else None
            )
        async for pcm in made:
            self.audio += pcm
            span.end = len(self.audio)
            self._notify()

    async def _phrase_and_rest(self, phrase: str, due: float) -> None:
        """A split first sentence: the rest asked for at once, due when the phrase will have
        played, so it is made meanwhile, busy voice or not (`Pacing.rest_beside_phrase`). Its
        task lives in this stage's own group: cancelled with the turn, whichever part runs."""
        rest = await self._sentences.get()  # queued with its phrase (`_queue`), never None
        rest_due = due + len(phrase) * PHRASE_S_PER_CHAR
        async with asyncio.TaskGroup() as parts:
            # The task starts once the phrase's own request is in the voice's queue (a voice
            # asks at its first step): so a free core takes the phrase first.
            made = parts.create_task(self._collect(rest, rest_due), name="agent-tts-rest")
            await self._make(phrase, due)
            await self._make(rest, rest_due, _replay(await made))

    async def _collect(self, sentence: str, due: float) -> list[bytes]:
        return [pcm async for pcm in self.tts.synthesize(sentence, due=due)]

    def _trace_tts(self, queued_s: float, worked_s: float) -> None:
        self.timings.add_stage("tts_queue", queued_s)
        self.timings.add_stage("tts_work", worked_s)

    def _may_not_synthesise(self, ahead: int) -> bool:
        """Held, ahead of sending by `ahead` bytes, or speculating with a sentence made."""
        if self.state is AgentState.SPECULATING and len(self.spans) >= self._first_parts:
            return True  # one sentence (its phrase and the rest) is what a speculation may cost
        return self.state is AgentState.HELD or len(self.audio) - self.sent > ahead

    async def _pace(self) -> None:
        """Send audio at real time plus the lead; end each wire turn; return once played."""
        while True:
            self._changed.clear()
            if self.state in (AgentState.HELD, AgentState.PENDING, AgentState.SPECULATING):
                await self._wait()
                continue
            if self.state is AgentState.DONE:
                return
            now = self.clock()
            if self.sent < len(self.audio):
                wait = self.tracker.ahead(now) - self.pacing.lead_s
                if wait > 0:
                    await self._wait(wait)
                else:
                    self._send_audio(now)
                continue
            if not self.synthesising:
                self._end_wire_turn()
                if not self._wire_has_audio or self.state is AgentState.QUIET:
                    self._finish_quietly()
                    return
            await self._wait()

    def _send_audio(self, now: float) -> None:
        if self.state is AgentState.QUIET:  # more words after a slow tool call: a new wire turn
            self._start_wire_turn(self.sent)
        pcm = bytes(self.audio[self.sent : self.sent + CHUNK_BYTES])
        self._delta += 1
        delta_id = f"{self.wire_id}-{self._delta}"
        self._put(p.ResponseAudio(content=base64.b64encode(pcm).decode("ascii"),
                                  turn_id=self.wire_id, delta_id=delta_id))  # fmt: skip
        chunk = self.tracker.record(self.wire_id, delta_id, self.sent, pcm, now)
        if self.on_audio_sent is not None:
            self.on_audio_sent(chunk)
        self.sent += len(pcm)
        if not self._wire_has_audio:
            self._wire_has_audio = True
            self.timings.mark("first_audio")

    def _end_wire_turn(self) -> None:
        self.answered.set()
        if not self._wire_ended:
            self._wire_ended = True
            report = self.timings.report() if self.wire_id == self.turn_id else {}
            self._put(p.ResponseEnd(turn_id=self.wire_id, timings=report or None))

    def _finish_quietly(self) -> None:
        """Nothing (more) to play: the wire turn ends here."""
        if self.state is not AgentState.QUIET:
            self._put(p.TurnEnd(role="assistant", turn_id=self.wire_id))
        self.state = AgentState.DONE

    # -- plumbing ------------------------------------------------------------------------------

    def _put(self, message: p.Message) -> None:
        self.outbox.put(message)

    async def _emit(self, message: p.Message) -> None:
        """Text and data of the turn: out now, or held back (bounded) while the turn is held."""
        held = (AgentState.HELD, AgentState.SPECULATING)
        while self.state in held and len(self._held) >= self.pacing.held_messages:
            await self._wait()
        if self.state in held:
            self._held.append(message)
        else:
            message.turn_id = self.wire_id
            self._put(message)

    def _notify(self) -> None:
        self._changed.set()

    async def _wait(self, timeout: float | None = None) -> None:
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._changed.wait()

    # -- what was heard ------------------------------------------------------------------------

    def heard_text(self) -> str:
        """The words the listener heard: whole sentences, then the words of the sentence being
        played in proportion to how much of its audio had played (clamped to audio sent).
        Nothing, if the turn never went out (a speculation that was cancelled)."""
        if not self._on_wire:
            return ""
        heard = min(self.heard, self.tracker.sent_until) if self.interrupted else len(self.audio)
        words: list[str] = []
        for span in self.spans:
            if heard >= span.end:
                words.append(span.text)
                continue
            if heard > span.start and span.end > span.start:
                fraction = (heard - span.start) / (span.end - span.start)
                cut = [w.group() for w in _WORD.finditer(span.text)
                       if w.end() <= fraction * len(span.text)]  # fmt: skip
                if cut:
                    words.append(" ".join(cut))
            break
        return " ".join(words)

    def heard_sentences(self) -> str:
        """The sentences the listener has heard to their end by now (estimated from the pacing,
        clamped to audio sent): what the history may claim while the answer still plays."""
        heard = self.heard if self._heard_known else self.tracker.position(self.clock())
        heard = min(heard, self.tracker.sent_until)  # held, or reported by the client
        return " ".join(s.text for s in self.spans if s.start < s.end <= heard)

    def heard_seconds(self) -> float:
        return self.heard / 2 / RATE


async def _replay(pieces: list[bytes]) -> AsyncIterator[bytes]:
    """Audio made ahead, given as a voice gives it."""
    for pcm in pieces:
        yield pcm
