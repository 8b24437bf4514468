"""PCM16 mono helpers: streaming resampling and levels.

The pipeline works at 16 kHz (`RATE`, declared here once). Microphones arrive at 8 kHz (the
official SDK) or 16 kHz (ours), Piper speaks at 22050 Hz. `Resampler` converts a stream chunk
by chunk with a windowed-sinc polyphase filter whose cut-off sits below the lower Nyquist
frequency, so downsampling does not alias and chunk boundaries make no clicks: it keeps the
filter's history between calls.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np

from layercode_client.protocol import OUTPUT_SAMPLE_RATE

RATE = OUTPUT_SAMPLE_RATE  # the pipeline's one sample rate: VAD, STT, TTS and response.audio
TAPS_PER_PHASE = 16  # filter half-width in input samples: ~0.6 ms, good enough for speech


def to_samples(pcm: bytes) -> np.ndarray:
    usable = len(pcm) - len(pcm) % 2
    return np.frombuffer(pcm[:usable], dtype="<i2")


def to_pcm(samples: np.ndarray) -> bytes:
    return np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()


def rms(pcm: bytes) -> float:
    """Root-mean-square level, 0..1 of full scale."""
    samples = to_samples(pcm)
    if samples.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)) / 32768.0)


@lru_cache(maxsize=16)
def _kernel(up: int, down: int) -> tuple[np.ndarray, int]:
    """Polyphase windowed-sinc low-pass for a rational ratio up/down; (taps, half width)."""
    cutoff = 0.94 / max(up, down)  # fraction of the upsampled rate's Nyquist, with a margin
    half = TAPS_PER_PHASE * max(up, down)
    n = np.arange(-half, half + 1)
    taps = cutoff * np.sinc(cutoff * n) * np.kaiser(2 * half + 1, 8.0) * up
    return taps, half


@lru_cache(maxsize=16)
def _phase_weights(up: int, down: int, reach: int) -> np.ndarray:
    """The filter's weights for every output phase: row r serves outputs at r (mod up) past an
    input, over that input's `2 * reach` neighbours. Computed once, so filtering is one gather
    and one multiply-add per output."""
    taps, half = _kernel(up, down)
    phases = np.arange(up)[:, None]
    lag = phases - np.arange(-reach + 1, reach + 1)[None, :] * up + half
    valid = (lag >= 0) & (lag < taps.size)
    return np.where(valid, taps[np.clip(lag, 0, taps.size - 1)], 0.0)


class Resampler:
    """Streaming rational resampler: `process()` chunks in, `flush()` the tail at the end."""

    def __init__(self, src_rate: int, dst_rate: int):
        ratio = Fraction(dst_rate, src_rate)
        self.src_rate, self.dst_rate = src_rate, dst_rate
        self.up, self.down = ratio.numerator, ratio.denominator
        self.taps, self.half = _kernel(self.up, self.down)
        self._reach = self.half // self.up + 1  # input samples of context each side
        self._weights = _phase_weights(self.up, self.down, self._reach)
        self._neighbours = np.arange(-self._reach + 1, self._reach + 1)
        self._history = np.zeros(self._reach, dtype=np.float64)  # inputs before the pending
        self._pending = np.zeros(0, dtype=np.float64)  # inputs not yet fully used
        self._next_out = 0  # index of the next output, in upsampled units from _pending[0]
        self._odd_byte = b""

    def process(self, pcm: bytes) -> bytes:
        if self.up == self.down:
            return pcm
        pcm = self._odd_byte + pcm
        self._odd_byte = pcm[len(pcm) - len(pcm) % 2 :]
        incoming = to_samples(pcm).astype(np.float64)
        if incoming.size == 0:
            return b""
        self._pending = np.concatenate([self._pending, incoming])
        return to_pcm(self._run(final=False))

    def flush(self) -> bytes:
        if self.up == self.down:
            return b""
        return to_pcm(self._run(final=True))

    def _run(self, final: bool) -> np.ndarray:
        signal = np.concatenate([self._history, self._pending, np.zeros(self._reach)])
        offset = self._history.size  # where _pending[0] sits in `signal`
        available = self._pending.size if final else self._pending.size - self._reach
        if available <= 0:
            return np.zeros(0)
        last = available * self.up  # outputs whose centre is before this (upsampled units)
        positions = np.arange(self._next_out, last, self.down)
        if positions.size == 0:
            return np.zeros(0)
        out = self._filter(signal, offset, positions)
        self._next_out = int(positions[-1]) + self.down
        used = min(self._next_out // self.up, self._pending.size)
        kept = np.concatenate([self._history, self._pending[:used]])
        self._history = kept[-self._reach :]
        self._pending = self._pending[used:]
        self._next_out -= used * self.up
        return out

    def _filter(self, signal: np.ndarray, offset: int, positions: np.ndarray) -> np.ndarray:
        """Each output y(p) = sum_k x[k] * h(p - k*up), over inputs within the filter's reach."""
        if self.down == 1:
            return self._filter_upsampling(signal, offset, positions)
        return self._filter_gather(signal, offset, positions)

    def _filter_gather(self, signal: np.ndarray, offset: int, positions: np.ndarray) -> np.ndarray:
        base = positions // self.up  # the input at or before each output
        neighbours = signal[base[:, None] + self._neighbours[None, :] + offset]
        return np.einsum("ij,ij->i", neighbours, self._weights[positions % self.up])

    def _filter_upsampling(
        self, signal: np.ndarray, offset: int, positions: np.ndarray
    ) -> np.ndarray:
        """`_filter` for a whole-number ratio (8 → 16 kHz, the official SDK's microphone): the
        outputs of each phase are one correlation of the input with that phase's weights, made
        in C, interleaved. The same output as the gather, sample for sample (tested), at a fifth
        of its CPU (0.45 against 2.3 ms per second of audio): it runs on every chunk of an 8 kHz
        session."""
        first, last = int(positions[0]), int(positions[-1])
        low, high = first // self.up, last // self.up  # the inputs at or before them
        start = low + offset - self._reach + 1
        segment = signal[start : high + offset + self._reach + 1]
        out = np.empty((high - low + 1, self.up))
        for phase in range(self.up):
            out[:, phase] = np.correlate(segment, self._weights[phase], mode="valid")
        flat = out.reshape(-1)
        return flat[first - low * self.up : last - low * self.up + 1]


def resample(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    """One-shot conversion of a whole clip."""
    if src_rate == dst_rate:
        return pcm
    resampler = Resampler(src_rate, dst_rate)
    return resampler.process(pcm) + resampler.flush()
