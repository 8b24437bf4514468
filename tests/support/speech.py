"""Real speech for tests, made at test time with the pipeline's own Piper voice.

Piper speech is what pocketsphinx recognises well (server/pipeline/stt.py), so the stage tests
and the end-to-end tests speak to the app with it: no recorded files in the repository.
"""

from __future__ import annotations

import functools
import wave
from pathlib import Path

from server.pipeline.audio import resample


@functools.cache
def _voice():
    from piper import PiperVoice

    from server.pipeline.tts.piper import PiperTTS

    return PiperVoice.load(str(PiperTTS.bundled_voice()))


@functools.lru_cache(maxsize=64)
def speak(text: str, rate: int = 16000) -> bytes:
    """`text` spoken by Piper as PCM16 mono at `rate`, the same every time.

    Piper samples noise for each rendition, and pocketsphinx heard one rendition in six of
    "Can you help me?" as "in you go play": without the noise, a test hears what it heard last.
    """
    from piper import SynthesisConfig

    voice = _voice()
    steady = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    pcm = b"".join(chunk.audio_int16_bytes for chunk in voice.synthesize(text, steady))
    return resample(pcm, voice.config.sample_rate, rate)


def silence(seconds: float, rate: int = 16000) -> bytes:
    return bytes(int(seconds * rate) * 2)


def write_wav(path: Path, pcm: bytes, rate: int) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    return path


def read_wav(path: Path) -> tuple[bytes, int]:
    with wave.open(str(path), "rb") as wav:
        return wav.readframes(wav.getnframes()), wav.getframerate()


def voiced_span(pcm: bytes, rate: int = 16000, level: int = 300) -> tuple[float, float]:
    """Seconds where the voice starts and stops: the first and last 10 ms above `level`."""
    import numpy as np

    block = rate // 100
    samples = np.frombuffer(pcm, "<i2").astype(float)
    blocks = samples[: samples.size // block * block].reshape(-1, block)
    loud = np.flatnonzero(np.sqrt((blocks**2).mean(axis=1)) > level)
    return float(loud[0]) * 0.01, float(loud[-1] + 1) * 0.01
