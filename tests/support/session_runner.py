"""A pipeline session run in-process with fake stages, for tests of turn-taking.

The fakes behave like the outside world, not like our demo: `StreamingAgent` streams its answer
a sentence at a time over seconds (an LLM-backed agent), `FakeTTS` makes audio whose length is
proportional to the words (0.2 s a word, so "what was heard" has a known answer), `FakeRecognizer`
answers what the test scripted, and `FakeDetector` reads voice from the samples: a chunk of
non-zero samples is speech, a chunk of zeros is silence. `SessionRunner` feeds client frames and
keeps every frame the session sends, with its arrival time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from layercode_client.protocol import SessionConfig
from server.pipeline.agent_turn import Pacing
from server.pipeline.echo import EchoSettings
from server.pipeline.keys import SessionGrant
from server.pipeline.session import InterruptionSettings, PipelineServices, PipelineSession
from server.pipeline.store import SessionStore
from server.pipeline.turns import (
    SpeechAudio,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    TurnSettings,
)
from server.pipeline.webhook import (
    NOTIFICATIONS,
    AgentData,
    AgentEnd,
    AgentHangup,
    AgentSpeech,
    WebhookEvent,
)

RATE = 16000
WORD_S = 0.2  # FakeTTS: seconds of audio per word
CHUNK_S = 0.1


class StreamingAgent:
    """Answers every `message` (and the welcome) with `sentences`, one every `interval_s`;
    with `hold_open`, the stream stays open after the last one until `release()`."""

    def __init__(self, sentences: list[str], interval_s: float = 0.7, hold_open: bool = False):
        self.sentences = sentences
        self.interval_s = interval_s
        self.hold_open = hold_open
        self.events: list[WebhookEvent] = []
        self.sent: list[str] = []  # sentences actually streamed
        self.closed = 0  # streams that ended by being closed from our side
        self._release = asyncio.Event()
        self.welcome: list[str] | None = None  # None: the welcome says `sentences` too
        self.data: object | None = None
        self.hangup = False

    def release(self) -> None:
        self._release.set()

    async def respond(self, event: WebhookEvent) -> AsyncIterator:
        self.events.append(event)
        if event.type in NOTIFICATIONS:
            return
        sentences = self.sentences
        if event.type == "session.start" and self.welcome is not None:
            sentences = self.welcome
        try:
            for n, sentence in enumerate(sentences):
                if n:
                    await asyncio.sleep(self.interval_s)
                self.sent.append(sentence)
                yield AgentSpeech(sentence)
            if self.data is not None:
                yield AgentData(self.data)
            if self.hangup:
                yield AgentHangup()
            if self.hold_open:
                await self._release.wait()
            yield AgentEnd()
        except GeneratorExit:
            self.closed += 1
            raise
        except asyncio.CancelledError:
            self.closed += 1
            raise


class FakeTTS:
    sample_rate = RATE
    idle = True

    def __init__(self, delay_s: float = 0.02):
        self.delay_s = delay_s
        self.made: list[str] = []

    def warm(self) -> None:
        pass

    def close(self) -> None:
        pass

    async def synthesize(
        self, text: str, due: float | None = None, on_timing=None
    ) -> AsyncIterator[bytes]:
        await asyncio.sleep(self.delay_s)
        self.made.append(text)
        pcm = b"\x10\x00" * int(len(text.split()) * WORD_S * RATE)
        for offset in range(0, len(pcm), 8000):
            yield pcm[offset : offset + 8000]


class FakeRecognizer:
    def __init__(self, script: FakeRecognizerPool):
        self.script = script
        self.fed = 0
        self.decoded_bytes = 0  # all of it, at once
        self.waited_s = self.ran_s = 0.0  # the trace of the queues (stt.Recognizer): none here

    async def feed(self, pcm: bytes, more=None, on_interim=None) -> str | None:
        """As stt.Recognizer.feed, decoding `pcm` at once (`more` is left for the next feed)."""
        self.fed += len(pcm)
        self.decoded_bytes += len(pcm)
        interim = self._interim()
        if interim is not None and on_interim is not None:
            on_interim(interim)
        return interim

    def _interim(self) -> str | None:
        if self.script.interim is not None:
            return self.script.interim
        words = self.script.text.split()
        if not words or self.fed < self.script.interim_after_bytes:
            return None
        return " ".join(words[: max(1, len(words) // 2)])

    async def words(self) -> str:
        if self.script.words is not None:
            return self.script.words
        return self.script.interim or ""

    async def finish(self) -> str:
        return self.script.text


class FakeRecognizerPool:
    """Each utterance is heard as `text` (set by the test before speaking)."""

    def __init__(self) -> None:
        self.text = ""
        self.interim_after_bytes = 10**9  # no interim hypotheses unless a test asks for them
        self.interim: str | None = None  # set: the interim hypothesis of every piece fed
        self.words: str | None = None  # set: the hypothesis asked for at once (`words()`)

    @contextlib.asynccontextmanager
    async def utterance(self):
        yield FakeRecognizer(self)


class FakeDetector:
    """Speech is a chunk of non-zero samples; the first silent chunk after it ends the turn."""

    pending_decision = None  # no turn-end model

    def __init__(self, settings: TurnSettings | None = None):
        self.in_speech = False
        self.fed = 0

    def hint(self, words: str, look: int) -> None:
        pass

    def feed(self, pcm: bytes):
        self.fed += len(pcm) // 2
        voiced = any(pcm[:2])
        if voiced and not self.in_speech:
            self.in_speech = True
            return [SpeechStarted(preroll=pcm, start_s=self.fed / RATE)]
        if voiced:
            return [SpeechAudio(pcm)]
        if self.in_speech:
            self.in_speech = False
            return [SpeechEnded(speech_end_s=self.fed / RATE)]
        return []

    def force_end(self):
        if not self.in_speech:
            return []
        self.in_speech = False
        return [SpeechEnded(speech_end_s=self.fed / RATE)]


class PausingDetector(FakeDetector):
    """Like FakeDetector, but the first silent chunk after speech is a pause (SpeechPaused) and
    the second ends the turn; voice after a pause resumes it (SpeechResumed)."""

    def __init__(self, settings: TurnSettings | None = None):
        super().__init__(settings)
        self.paused = False

    def feed(self, pcm: bytes):
        voiced = any(pcm[:2])
        if not self.in_speech or (voiced and not self.paused):
            return super().feed(pcm)
        self.fed += len(pcm) // 2
        if voiced:
            self.paused = False
            return [SpeechResumed(), SpeechAudio(pcm)]
        if not self.paused:
            self.paused = True
            return [SpeechAudio(pcm), SpeechPaused(speech_end_s=self.fed / RATE)]
        self.paused = False
        self.in_speech = False
        return [SpeechEnded(speech_end_s=self.fed / RATE)]


VOICE = b"\x00\x04" * int(RATE * CHUNK_S)
SILENCE = b"\x00\x00" * int(RATE * CHUNK_S)


@dataclass
class Sent:
    message: dict
    at: float

    @property
    def type(self) -> str:
        return self.message["type"]


@dataclass
class SessionRunner:
    """One session over in-memory frames; `async with` starts and ends it."""

    tmp: Path
    agent: StreamingAgent
    tts: FakeTTS = field(default_factory=FakeTTS)
    recognizers: FakeRecognizerPool = field(default_factory=FakeRecognizerPool)
    interruptions: InterruptionSettings = field(default_factory=InterruptionSettings)
    pacing: Pacing = field(default_factory=lambda: Pacing(lead_s=0.2))
    can_interrupt: bool = True
    speculative: bool = False
    make_detector: Callable = FakeDetector
    # The fakes' audio is not speech: the echo guard is off unless a test turns it on.
    echo: EchoSettings = field(default_factory=lambda: EchoSettings(enabled=False))
    sent: list[Sent] = field(default_factory=list)
    closed_with: tuple[int, str] | None = None
    session_id: str | None = None  # set: a later connection to that conversation (a resume)

    async def __aenter__(self) -> SessionRunner:
        self.store = SessionStore(self.tmp / "sessions.sqlite3")
        self.session_id = self.session_id or await self.store.create("test", {})
        config = SessionConfig(can_interrupt=self.can_interrupt, input_sample_rate=RATE)
        grant = SessionGrant(self.session_id, "test", config)
        services = PipelineServices(
            store=self.store,
            recognizers=self.recognizers,
            tts=self.tts,
            agent=self.agent,
            interruptions=self.interruptions,
            pacing=self.pacing,
            echo_settings=self.echo,
            make_detector=self.make_detector,
            speculative=self.speculative,
        )
        self._frames: asyncio.Queue[str | None] = asyncio.Queue()
        self._arrived = asyncio.Event()
        self.session = PipelineSession(grant, services, self._record, self._closed)
        self._task = asyncio.create_task(self.session.run(self._incoming()))
        return self

    async def __aexit__(self, *exc) -> None:
        await self._frames.put(None)
        await asyncio.wait_for(self._task, 10)
        await self.store.close()

    async def _incoming(self) -> AsyncIterator[str]:
        while (frame := await self._frames.get()) is not None:
            yield frame

    async def _record(self, text: str) -> None:
        self.sent.append(Sent(json.loads(text), time.monotonic()))
        self._arrived.set()

    async def _closed(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)
        await self._frames.put(None)

    async def wait_closed(self, timeout: float = 10.0) -> tuple[int, str]:
        await asyncio.wait_for(asyncio.shield(self._task), timeout)
        return self.closed_with

    async def send(self, message: dict) -> None:
        await self._frames.put(json.dumps(message))
        await asyncio.sleep(0)  # let the session take it

    async def audio(self, pcm: bytes) -> None:
        await self.send({"type": "client.audio", "content": base64.b64encode(pcm).decode()})

    async def speak(self, text: str, chunks: int = 3, *, end: bool = True) -> None:
        """The user speaks `chunks` × 100 ms (heard as `text`), then (with `end`) stops."""
        self.recognizers.text = text
        for _ in range(chunks):
            await self.audio(VOICE)
            await asyncio.sleep(CHUNK_S)
        if end:
            await self.audio(SILENCE)

    async def wait_for(
        self, type_: str, where: Callable[[dict], bool] = lambda m: True, *, after: int = 0,
        timeout: float = 10.0,
    ) -> Sent:  # fmt: skip
        async with asyncio.timeout(timeout):
            while True:
                for item in self.sent[after:]:
                    if item.type == type_ and where(item.message):
                        return item
                self._arrived.clear()
                await self._arrived.wait()

    async def until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until `condition()` holds, checking as each frame arrives."""
        async with asyncio.timeout(timeout):
            while not condition():
                self._arrived.clear()
                await self._arrived.wait()

    async def eventually(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until `condition()` holds, for conditions no frame announces (work the session
        does without sending anything: a speculative answer)."""
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.01)

    def of_turn(self, turn_id: str, after: int = 0) -> list[dict]:
        return [s.message for s in self.sent[after:] if s.message.get("turn_id") == turn_id]

    def types(self, after: int = 0) -> list[str]:
        return [s.type for s in self.sent[after:]]

    def audio_seconds(self, turn_id: str) -> float:
        return sum(
            len(base64.b64decode(m["content"])) / 2 / RATE
            for m in self.of_turn(turn_id)
            if m["type"] == "response.audio"
        )
