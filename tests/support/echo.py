"""A microphone that hears the speakers: the agent's own answer coming back, for the echo tests
and bench/echo.py.

Made the way a laptop without a headset makes it: the answer delayed (browser output latency,
network, input latency), attenuated, optionally through a small room's reverberation, with a
person maybe talking on top, a little hiss, and optionally through an 8 kHz microphone (the
official SDK's rate) that the pipeline upsamples to 16 kHz.
"""

from __future__ import annotations

import numpy as np

from server.pipeline.audio import RATE, resample
from server.pipeline.echo import EchoGuard
from server.pipeline.turns import SpeechStarted, TurnDetector

FRAME = 320  # fed 20 ms at a time, so a start's stream time is known to the frame


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], "<i2").astype(np.float64)


def room(rt60_s: float, seed: int = 3) -> np.ndarray:
    """A small room's impulse response: the direct sound, then a decaying diffuse tail."""
    rng = np.random.default_rng(seed)
    n = round(rt60_s * RATE)
    tail = rng.normal(0, 1, n) * np.exp(-6.9 * np.arange(n) / n)  # -60 dB at rt60
    tail *= 0.3 / np.sqrt((tail**2).sum())  # the tail carries ~-10 dB of the energy
    response = np.zeros(n + 1)
    response[0] = 1.0
    response[1 + round(0.002 * RATE) :] += tail[: n - round(0.002 * RATE)]
    return response


def microphone(
    answer: bytes,
    due_s: float,
    delay_s: float,
    level_db: float,
    *,
    person: bytes = b"",
    person_at_s: float = 0.0,
    person_db: float = -3.0,
    echo_until_s: float | None = None,
    rt60_s: float = 0.0,
    rate: int = RATE,
    jump: tuple[float, float] | None = None,
    processed: bool = False,
    seed: int = 7,
) -> bytes:
    """16 kHz PCM16: the answer (due at `due_s`) heard `delay_s` later at `level_db`, plus
    `person` from `person_at_s` at `person_db`.

    `echo_until_s`: the client stopped playing at that due time. `rt60_s`: a room's reverb.
    `jump=(at_s, extra_s)`: playback stalled at due time `at_s`, then ran `extra_s` later.
    `processed`: the echo went through a browser's capture processing (`capture_processing`).
    """
    echo = samples(answer) * 10 ** (level_db / 20)
    if echo_until_s is not None:
        echo = echo[: round((echo_until_s - due_s) * RATE)]
    if rt60_s:
        echo = np.convolve(echo, room(rt60_s))[: echo.size + round(rt60_s * RATE)]
    if processed:
        echo = capture_processing(echo, seed)
    heard = [(round((due_s + delay_s) * RATE), echo)]
    if jump is not None:
        cut = round((jump[0] - due_s) * RATE)
        heard = [(heard[0][0], echo[:cut]), (heard[0][0] + cut + round(jump[1] * RATE), echo[cut:])]
    length = max(at + part.size for at, part in heard) + RATE
    mic = np.zeros(max(length, round(person_at_s * RATE) + len(person) // 2 + RATE))
    for at, part in heard:
        mic[at : at + part.size] += part
    if person:
        voice = samples(person) * 10 ** (person_db / 20)
        at = round(person_at_s * RATE)
        mic[at : at + voice.size] += voice
    mic += np.random.default_rng(seed).normal(0, 30, mic.size)  # about -60 dBFS of hiss
    pcm = np.clip(np.rint(mic), -32768, 32767).astype("<i2").tobytes()
    if rate != RATE:
        pcm = resample(resample(pcm, RATE, rate), rate, RATE)
    return pcm


def capture_processing(echo: np.ndarray, seed: int) -> np.ndarray:
    """What a browser's echo canceller, noise suppressor and gain control leave of an echo,
    roughly: a gain that changes every 20 ms in each of 16 bands (0 to -12 dB, as a residual
    echo suppressor's does) and 6 dB of automatic gain. Measured like Chromium's output on
    the fake microphone (tests/browser/test_echo.py): the echo correlates 0.4-0.7 with what
    was sent, chunk by chunk, so the linear filter cannot prove a lock on it."""
    rng = np.random.default_rng(seed)
    frame = 640  # 40 ms frames, 20 ms apart (Hann windows that sum to one)
    window = np.hanning(frame + 1)[:frame]
    padded = np.concatenate((np.zeros(frame), echo, np.zeros(frame)))
    out = np.zeros(padded.size)
    edges = np.linspace(0, frame // 2 + 1, 17).astype(int)
    for start in range(0, padded.size - frame, frame // 2):
        spectrum = np.fft.rfft(padded[start : start + frame] * window)
        gains_db = rng.uniform(-12.0, 0.0, 16)
        gains = np.repeat(10 ** (gains_db / 20), np.diff(edges))
        out[start : start + frame] += np.fft.irfft(spectrum * gains, frame)
    return 2.0 * out[frame : frame + echo.size]


def turn_starts(mic: bytes, guard: EchoGuard | None, drop_after_s: float | None = None) -> list:
    """Stream times at which the real TurnDetector reported a start, `guard` in front of it
    (its reference already added). `drop_after_s`: the agent was interrupted then."""
    detector = TurnDetector()
    fed = 0
    starts = []
    for offset in range(0, len(mic), FRAME * 2):
        chunk = mic[offset : offset + FRAME * 2]
        if guard is not None:
            if drop_after_s is not None and offset / 2 / RATE >= drop_after_s:
                guard.drop_reference_after(drop_after_s)
                drop_after_s = None
            chunk = guard.clean(chunk)
        fed += len(chunk) // 2
        starts += [fed / RATE for e in detector.feed(chunk) if isinstance(e, SpeechStarted)]
    return starts
