"""Fine spectral structure: tells the agent's echo from a person's voice, block by block.

The echo gate (echo_gate.py) predicts the echo from the reference's *envelope* (which bands are
loud when). An envelope cannot tell a person from the agent's echo when both are speech in the
same voice: a person starting as far into an answer as an echo lags lines up with the
reference's onset (envelopes 0.85-0.95), and over a loud echo their level is "explained". What a
browser's capture processing keeps besides the envelope is the *harmonic comb*: its echo
canceller, noise suppressor and gain control scale bands of 60-500 Hz up and down, they never
move a harmonic. The comb is the voice's pitch at that instant, and a person saying other words
(in any voice, the agent's own included) has another pitch at that instant.

So each 40 ms frame (a 20 ms block and the one before) becomes its log power spectrum,
100-2500 Hz at 25 Hz, minus its own 225 Hz moving average (what is left is the comb, with the
band gains removed), normalised; two frames match by the dot product of these vectors.
Measured (the echo at its delay, the best of +/-10 ms, blocks louder than -40 dBFS):

    microphone (blocks louder than -40 dBFS)                      median   p10   < 0.35
    Chromium 156's processed echo (tests/fixtures/chromium_echo_*)   0.70   0.45     4 %
      the same with a person (Piper) over it, from their first word  0.26   0.07    71 %
    an echo processed like Chromium's (tests/support/echo.py)        0.86   0.65     1 %
    a person alone in the agent's Piper voice, at any delay          0.16   0.03    95 %
    a person alone in espeak's voice, at any delay                   0.09  -0.02    98 %

A sample-level correlation finds no delay in Chromium's echo (its phase is not kept); the
comb is, to within 10 ms: the match peaks at one offset and falls by half 20 ms away, so the
offset is searched in 10 ms steps around the envelope's delay.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np

from .audio import RATE

BLOCK = 320  # 20 ms, as in echo.py
STEP = 160  # offsets are searched in 10 ms steps
_FRAME = 2 * BLOCK
_WINDOW_FN = np.hanning(_FRAME)
_FREQS = np.fft.rfftfreq(_FRAME, 1 / RATE)
_BAND = (_FREQS >= 100.0) & (_FREQS <= 2500.0)
_SMOOTH = np.ones(9) / 9  # 225 Hz: wider than a harmonic, narrower than a band gain
_FLOOR = 1e6  # power added before the log: silence gives no comb, hiss a random one
VOICED_RMS = 300.0  # a reference frame quieter than this (-40 dBFS) has no comb to match


def comb(samples: np.ndarray) -> np.ndarray:
    """The fine structure of 40 ms of audio: unit vector (or zeros for a flat spectrum)."""
    power = np.log(np.abs(np.fft.rfft(samples * _WINDOW_FN)) ** 2 + _FLOOR)
    fine = (power - np.convolve(power, _SMOOTH, mode="same"))[_BAND]
    fine -= fine.mean()
    norm = np.sqrt(fine @ fine)
    # Under 0.1 neper rms the spectrum is flat (hiss, silence under the floor): no comb.
    return fine / norm if norm > 0.1 * np.sqrt(fine.size) else fine * 0.0


class Combs:
    """The combs of the latest blocks of one stream (microphone or filter output), by index.
    Each is computed when first asked for: most blocks never are (no agent audio is due, or
    the block is quiet)."""

    def __init__(self, keep: int):
        self._kept: deque[list] = deque(maxlen=keep)  # [block before, block, comb or None]
        self._last = np.zeros(BLOCK)
        self.count = 0

    def add(self, samples: np.ndarray) -> None:
        self._kept.append([self._last, samples, None])
        self._last = samples
        self.count += 1

    def get(self, block: int) -> np.ndarray | None:
        first = self.count - len(self._kept)
        if not first <= block < self.count:
            return None
        kept = self._kept[block - first]
        if kept[2] is None:
            kept[2] = comb(np.concatenate((kept[0], kept[1])))
        return kept[2]


class ReferenceCombs:
    """Combs of the reference frames, cached by start sample (multiples of STEP)."""

    def __init__(self, reference: Callable[[int, int], np.ndarray]):
        self._reference = reference
        self._cache: dict[int, np.ndarray | None] = {}

    def changed(self) -> None:
        self._cache = {}

    def at(self, start: int) -> np.ndarray | None:
        """The comb of the reference frame [start, start + 40 ms), None where it is unvoiced."""
        if start not in self._cache:
            if len(self._cache) > 8192:
                self._cache = {}
            frame = self._reference(start, start + _FRAME)
            voiced = frame @ frame >= VOICED_RMS**2 * _FRAME
            self._cache[start] = comb(frame) if voiced else None
        return self._cache[start]

    def match(self, heard: np.ndarray, block: int, offset: int, steps: int = 1) -> float | None:
        """The best match of `heard` (block `block`'s comb) with the reference `offset`
        samples earlier, +/- `steps` of 10 ms; None where the reference is unvoiced there."""
        best = None
        start = block * BLOCK - BLOCK - offset
        for k in range(-steps, steps + 1):
            ref = self.at(start + k * STEP)
            if ref is not None:
                score = float(heard @ ref)
                best = score if best is None else max(best, score)
        return best
