"""Speech-to-text with pocketsphinx: offline, its en-US model shipped inside the package.

Audio is decoded as it arrives (`feed`), so when the turn ends only the last chunk is left
to decode and the final transcript is ready within tens of milliseconds. Decoding runs in worker
threads, never on the event loop. Loading a decoder takes ~0.3 s, so decoders are pooled and
reused across utterances and sessions.

pocketsphinx holds the GIL while it decodes (measured: two decoders in two threads take as long
as one after the other), so decoding shares one core among all sessions; its real-time factor
with the settings below is about 0.11 on this machine (0.14 with the defaults, same words on the
test phrases), which is what bounds concurrent talkers.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

RATE = 16000
INTERIM_EVERY_BYTES = RATE * 2 * 300 // 1000  # an interim hypothesis at most every 300 ms
DECODER_CONFIG = {"samprate": RATE, "maxhmmpf": 3000, "loglevel": "FATAL"}


def new_decoder():
    from pocketsphinx import Decoder

    return Decoder(**DECODER_CONFIG)


class Recognizer:
    """One utterance on one pooled decoder. Calls must not overlap (the session awaits each).

    pocketsphinx adapts to the voice and microphone as it listens (its cepstral mean and noise
    estimates carry over from one utterance to the next), so a decoder belongs to one speaker —
    one session — while it lasts, and is reset (`reinit_feat`, a fraction of a millisecond)
    before it goes back to the pool: results depend on the speaker's own earlier words, never
    on who used the decoder before.
    """

    def __init__(self, decoder, executor: ThreadPoolExecutor, lock: threading.Lock):
        self._decoder = decoder
        self._executor = executor
        self._lock = lock  # shared by the speaker's utterances: a cancelled call may still run
        self._started = False
        self._ended = False
        self._since_interim = 0
        self._last_interim = ""

    def _run(self, work):
        def locked():
            with self._lock:
                return work()

        return asyncio.get_running_loop().run_in_executor(self._executor, locked)

    def _process(self, pcm: bytes) -> str | None:
        if not self._started:
            self._decoder.start_utt()
            self._started = True
        self._decoder.process_raw(pcm, False, False)
        self._since_interim += len(pcm)
        if self._since_interim < INTERIM_EVERY_BYTES:
            return None
        self._since_interim = 0
        hypothesis = self._decoder.hyp()
        return hypothesis.hypstr if hypothesis else ""

    async def feed(self, pcm: bytes) -> str | None:
        """Decode more audio; a new interim hypothesis when it changed, else None."""
        usable = pcm[: len(pcm) - len(pcm) % 2]
        if not usable:
            return None
        interim = await self._run(lambda: self._process(usable))
        if interim and interim != self._last_interim:
            self._last_interim = interim
            return interim
        return None

    def _end(self) -> str:
        if not self._started or self._ended:
            return ""
        self._ended = True
        self._decoder.end_utt()
        hypothesis = self._decoder.hyp()
        return hypothesis.hypstr if hypothesis else ""

    async def finish(self) -> str:
        """The final transcript of everything fed."""
        return (await self._run(self._end)).strip()

    def close_in_thread(self, then=None) -> None:
        """End an open utterance once in-flight work is done; with `then`, also forget the
        speaker and hand the decoder to `then(decoder)`."""

        def close():
            with self._lock, contextlib.suppress(Exception):
                self._end()
                if then is not None:
                    self._decoder.reinit_feat()
            return self._decoder

        future = self._executor.submit(close)
        if then is not None:
            future.add_done_callback(lambda f: then(f.result()))


class RecognizerPool:
    """Decoders shared by every session: taken per utterance, returned when it ends."""

    def __init__(self, max_workers: int = 2):
        self._idle: list = []
        self._idle_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="stt")

    def warm(self, count: int = 1) -> None:
        """Load decoders ahead of the first utterance (blocking: call it in a thread)."""
        for _ in range(count - len(self._idle)):
            decoder = new_decoder()
            with self._idle_lock:
                self._idle.append(decoder)

    def _give_back(self, decoder) -> None:
        with self._idle_lock:
            self._idle.append(decoder)

    async def _take(self):
        with self._idle_lock:
            if self._idle:
                return self._idle.pop()
        return await asyncio.get_running_loop().run_in_executor(self._executor, new_decoder)

    @contextlib.asynccontextmanager
    async def utterance(self, speaker: dict | None = None) -> AsyncIterator[Recognizer]:
        """One utterance of `speaker` (a dict the session keeps): on the speaker's own decoder,
        taken from the pool at their first utterance and kept until `release(speaker)`."""
        speaker = {} if speaker is None else speaker
        if "decoder" not in speaker:
            speaker["decoder"], speaker["lock"] = await self._take(), threading.Lock()
        recognizer = Recognizer(speaker["decoder"], self._executor, speaker["lock"])
        speaker["last"] = recognizer
        try:
            yield recognizer
        finally:
            recognizer.close_in_thread()

    def release(self, speaker: dict) -> None:
        """The speaker is gone: their decoder returns to the pool after any work in flight."""
        recognizer = speaker.pop("last", None)
        speaker.pop("decoder", None)
        if recognizer is not None:
            recognizer.close_in_thread(self._give_back)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
