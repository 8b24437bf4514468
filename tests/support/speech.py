"""Real speech for tests, made at test time with the pipeline's own Piper voice.

Piper speech is what pocketsphinx recognises well (server/pipeline/stt.py), so the stage tests
and the end-to-end tests speak to the app with it: no recorded files in the repository.
"""

from __future__ import annotations

import functools
import wave
from pathlib import Path

import numpy as np

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


@functools.cache
def _espeak():
    from server.pipeline.tts.espeak import EspeakTTS

    engine = EspeakTTS()
    engine.warm()
    return engine


@functools.lru_cache(maxsize=64)
def speak_espeak(text: str, rate: int = 16000) -> bytes:
    """`text` spoken by espeak-ng as PCM16 mono at `rate`: a second voice, unlike the agent's
    Piper voice (a person talking over the agent in the echo tests and benchmarks)."""
    engine = _espeak()
    return resample(engine._synthesize(text), engine._native_rate, rate)


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
    block = rate // 100
    samples = np.frombuffer(pcm, "<i2").astype(float)
    blocks = samples[: samples.size // block * block].reshape(-1, block)
    loud = np.flatnonzero(np.sqrt((blocks**2).mean(axis=1)) > level)
    return float(loud[0]) * 0.01, float(loud[-1] + 1) * 0.01


def with_pause(text: str, pause_s: float, rate: int = 16000) -> tuple[bytes, float]:
    """`text` (with a comma where the speaker hesitates) spoken with exactly `pause_s` of
    silence at that comma; also the second where the pause starts.

    The comma makes Piper reach the pause with the intonation of a sentence that goes on; its
    own short comma pause (the longest quiet stretch inside the speech) is replaced.
    """
    pcm = speak(text, rate)
    block = rate // 100
    samples = np.frombuffer(pcm, "<i2").astype(float)
    blocks = samples[: samples.size // block * block].reshape(-1, block)
    loud = np.sqrt((blocks**2).mean(axis=1)) > 300
    voiced = np.flatnonzero(loud)
    best, start = (0, 0), None
    for index in range(voiced[0], voiced[-1] + 1):
        if not loud[index]:
            start = index if start is None else start
        elif start is not None:
            best, start = max(best, (index - start, start)), None
    length, gap = best
    if not length:
        raise ValueError(f"no pause found in {text!r}")
    cut, resume = gap * block * 2, (gap + length) * block * 2
    return pcm[:cut] + silence(pause_s, rate) + pcm[resume:], gap / 100


def pink_noise(samples: int, seed: int) -> np.ndarray:
    """1/f noise (more like a room than white noise), unit RMS, the same for the same seed."""
    spectrum = np.fft.rfft(np.random.default_rng(seed).normal(size=samples))
    spectrum /= np.sqrt(np.maximum(np.arange(spectrum.size), 1))
    noise = np.fft.irfft(spectrum, samples)
    return noise / np.sqrt(np.mean(noise**2))


def add_noise(pcm: bytes, rate: int, snr_db: float, seed: int) -> bytes:
    """Pink noise mixed in at `snr_db` below the speech's power over its voiced 10 ms blocks."""
    x = np.frombuffer(pcm, "<i2").astype(np.float64)
    block = rate // 100
    blocks = x[: x.size // block * block].reshape(-1, block)
    energy = (blocks**2).mean(axis=1)
    voiced = energy[energy > energy.max() * 1e-3]  # the speech, not the silence around it
    gain = np.sqrt(voiced.mean() / 10 ** (snr_db / 10))
    noisy = x + pink_noise(x.size, seed) * gain
    return np.clip(np.rint(noisy), -32768, 32767).astype("<i2").tobytes()
