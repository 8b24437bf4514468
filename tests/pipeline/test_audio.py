"""The resampler: frequencies survive, aliases do not, and chunking changes nothing."""

from __future__ import annotations

import random

import numpy as np
import pytest

from server.pipeline.audio import Resampler, resample, rms, to_samples


def tone(freq: float, rate: int, seconds: float = 1.0, amplitude: float = 10000) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * freq * t) * amplitude).astype("<i2").tobytes()


def peak_hz(pcm: bytes, rate: int) -> float:
    samples = to_samples(pcm).astype(float)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return np.argmax(spectrum) * rate / samples.size


@pytest.mark.parametrize("src,dst", [(8000, 16000), (22050, 16000), (48000, 16000), (16000, 8000)])
def test_a_tone_keeps_its_frequency_level_and_duration(src, dst):
    out = resample(tone(1000, src), src, dst)
    assert abs(len(out) / 2 / dst - 1.0) < 0.01
    assert abs(peak_hz(out, dst) - 1000) < 5
    assert abs(rms(out[400:-400]) - rms(tone(1000, src))) < 0.01


def test_downsampling_removes_what_would_alias():
    out = resample(tone(10000, 22050), 22050, 16000)  # above the new Nyquist (8 kHz)
    assert rms(out) < 0.002 * rms(tone(10000, 22050)) / 0.2


def test_chunked_stream_equals_one_shot():
    clip = tone(440, 22050, 2.0) + tone(1200, 22050, 1.0)
    whole = resample(clip, 22050, 16000)
    resampler = Resampler(22050, 16000)
    rng = random.Random(5)
    pieces, offset = [], 0
    while offset < len(clip):
        size = rng.randint(1, 3001)  # odd sizes split samples across chunks
        pieces.append(resampler.process(clip[offset : offset + size]))
        offset += size
    pieces.append(resampler.flush())
    assert b"".join(pieces) == whole


def test_same_rate_passes_through_and_levels():
    clip = tone(300, 16000, 0.1)
    assert resample(clip, 16000, 16000) == clip
    assert rms(bytes(3200)) == 0.0
    assert rms(b"") == 0.0
    assert 0.2 < rms(tone(300, 16000, amplitude=10000)) < 0.25


class GatheringResampler(Resampler):
    """The general filter for every ratio, as before the whole-number fast path."""

    def _filter(self, signal, offset, positions):
        return self._filter_gather(signal, offset, positions)


@pytest.mark.parametrize("chunk", [1, 7, 320, 1600])
def test_upsampling_by_a_whole_number_gives_the_general_filters_samples(chunk):
    """8 → 16 kHz (the official SDK's microphone) takes a faster path: the same output."""
    noise = np.random.default_rng(3).normal(0, 8000, 8000 * 2).astype("<i2").tobytes()
    pcm = noise + tone(440, 8000, 0.5)
    outputs = []
    for kind in (Resampler, GatheringResampler):
        resampler = kind(8000, 16000)
        parts = [resampler.process(pcm[at : at + chunk]) for at in range(0, len(pcm), chunk)]
        outputs.append(b"".join(parts) + resampler.flush())
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) == 2 * len(pcm)
