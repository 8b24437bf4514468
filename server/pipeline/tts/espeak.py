"""espeak-ng through ctypes: the light voice, a few milliseconds per sentence."""

from __future__ import annotations

import ctypes
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from ..audio import RATE, Resampler
from . import CHUNK_BYTES, Timing
from .bridge import stream_from_thread


class EspeakTTS:
    """espeak-ng via ctypes, synchronous mode, one synthesis at a time (it is not thread-safe)."""

    sample_rate = RATE
    idle = True  # a sentence takes milliseconds: none waits long enough to matter
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
        self.warm()
        resampler = Resampler(self._native_rate, RATE)
        pcm = resampler.process(self._synthesize(text)) + resampler.flush()
        for offset in range(0, len(pcm), CHUNK_BYTES):
            emit(pcm[offset : offset + CHUNK_BYTES])  # raises _Stop once the consumer is gone

    async def synthesize(
        self, text: str, due: float | None = None, on_timing: Timing | None = None
    ) -> AsyncIterator[bytes]:
        """As it is made (a few milliseconds per sentence: `due` does not matter here, nor is
        there a queue to trace: `on_timing` is not called)."""
        async for pcm in stream_from_thread(lambda emit: self._produce(text, emit)):
            yield pcm
