"""Echo gate: the second line of the echo defence, for echo a linear filter cannot cancel.

`EchoGuard` (echo.py) subtracts the agent's voice sample by sample. That needs the echo to be a
linear copy of what was sent. Through a browser's capture processing it is not: Chromium's own
echo canceller, noise suppressor and gain control (on, as the page asks) leave the echo
correlating only 0.1-0.8 with what was sent, 20 ms chunk by chunk (measured on the fake
microphone in Chromium 156, tests/browser/test_echo.py), and delays it unevenly: a sentence
played after a gap arrived 200 ms later relative to the one before. Subtraction then removes
1-3 dB and the VAD opens a turn on the agent's own words.

What survives the processing is the *spectral envelope*: which bands are loud when. Measured on
the same recordings, 20 bands (150-3800 Hz, log-spaced) in 20 ms blocks, log energy: the
envelope of 0.3 s of microphone correlates 0.89-0.98 with the reference's at the echo's delay,
and at most 0.80 at any other delay. So the gate

1. **finds the delay** by correlating the envelopes (mean removed per band) over the delay
   range, every `every` blocks while agent audio is due; a peak of `lock_score` that beats
   every delay more than 3 blocks away by `lock_margin` locks it (and learns each band's gain
   from echo to microphone, as a median in dB);
2. **mutes a block its echo explains**: no band more than `margin_db` louder than the predicted
   echo (the reference's band energies at the delay, the loudest within +-2 blocks for the
   jitter of chunk placement, plus the learned gain), on average over the bands less than
   `excess_db`;
3. **holds a block it does not explain** (a person, or the echo at a new delay) for
   `doubt_s`, then searches the envelope of what is held: a new delay that explains it is
   adopted (what was held is gated with it: echo, silence); otherwise what was held is released
   as it was (a person talking over the agent). Before the first lock, audible blocks are
   held up to `give_up_s` from the first, then released (a headset: no echo).

Nothing is lost and stream time is unchanged (a held block comes out later, in order), so a
person's turn starts at the stream time they started; the wall clock pays the hold, at most
`give_up_s` once and `doubt_s` per unexplained sound.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .audio import RATE

BLOCK = 320  # 20 ms, as in echo.py
BANDS_HZ = (150.0, 3800.0)
N_BANDS = 20
FLOOR = 1e6  # band energy added before the log: quieter than the VAD's floor, so silence is flat
SMEAR = 2  # blocks either side of the delay the predicted echo takes its loudest from
WINDOW = 15  # blocks of envelope per delay search (0.3 s)


@dataclass(frozen=True)
class GateSettings:
    enabled: bool = True
    lock_score: float = 0.85  # envelope correlation at the echo's delay (measured 0.89-0.98)
    lock_margin: float = 0.1  # ... above any delay more than 3 blocks away (measured <= 0.80)
    every: int = 5  # blocks between delay searches while agent audio is due
    margin_db: float = 6.0  # a band this much over the predicted echo is not echo
    excess_db: float = 2.0  # mean excess over the bands above which a block is not echo
    doubt_s: float = 0.16  # an unexplained sound held this long before deciding
    give_up_s: float = 0.3  # held before the first lock, from the first audible block


def _band_matrix() -> np.ndarray:
    freqs = np.fft.rfftfreq(2 * BLOCK, 1 / RATE)
    edges = np.geomspace(*BANDS_HZ, N_BANDS + 1)
    return np.stack([(freqs >= lo) & (freqs < hi) for lo, hi in itertools.pairwise(edges)], 1) * 1.0


_BANDS = _band_matrix()
_WINDOW_FN = np.hanning(2 * BLOCK)


def envelope(samples: np.ndarray) -> np.ndarray:
    """Log band energies (dB) of 40 ms of audio (the block and the one before)."""
    power = np.abs(np.fft.rfft(samples * _WINDOW_FN)) ** 2
    return 10 * np.log10(power @ _BANDS + FLOOR)


def _correlations(mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Correlation of `mic` (W x bands) with each W-block window of `ref`, newest lag first:
    row k of the result is the delay of k blocks, where ref's last row lines up with mic's."""
    windows = np.lib.stride_tricks.sliding_window_view(ref, mic.shape, axis=(0, 1))[:, 0]
    windows = windows - windows.mean(axis=1, keepdims=True)
    m = mic - mic.mean(axis=0)
    dots = (windows * m).sum(axis=(1, 2))
    norms = np.sqrt((windows**2).sum(axis=(1, 2)) * (m**2).sum()) + 1e-9
    return (dots / norms)[::-1]


class EchoGate:
    """Mutes microphone blocks that the agent's echo explains, by spectral envelope.

    `observe()` every microphone block as it comes in (before any other processing), then pass
    blocks to `gate()` in order, each with its index; `reference(start, stop)` gives the agent
    audio due in a span of samples (the guard's timeline), `due_near(position)` whether any was
    due within the delay range of a block, and `min_lag`/`max_lag` the range (samples).
    """

    def __init__(
        self,
        settings: GateSettings,
        reference: Callable[[int, int], np.ndarray],
        due_near: Callable[[int], bool],
        min_lag: int,
        max_lag: int,
        audible: float,
    ):
        self.settings = settings
        self._reference = reference
        self._due_near_position = due_near
        self._min_block = min_lag // BLOCK
        self._max_block = -(-max_lag // BLOCK)
        self._audible = audible
        self._give_up = max(1, round(settings.give_up_s * RATE / BLOCK))
        self._doubt = max(1, round(settings.doubt_s * RATE / BLOCK))
        keep = WINDOW + self._give_up + self._doubt + 64
        self._mic: deque[np.ndarray] = deque(maxlen=keep)  # envelopes of the latest blocks
        self._last_samples = np.zeros(BLOCK)
        self._observed = 0  # blocks observed
        self._ref_cache: dict[int, np.ndarray] = {}
        self.lag: int | None = None  # blocks from due to heard, once locked
        self._gain = np.zeros(N_BANDS)  # dB from reference to microphone, per band
        self._held: list[tuple[int, bytes, bool]] = []  # (block, pcm, audible)
        self._doubt_from: int | None = None  # block where an unexplained sound began
        self._first_audible: int | None = None  # before the first lock
        self._passing = False  # before the first lock: gave up (no echo), passing
        self.locks = 0  # delay locks and changes, for tests and benchmarks

    def reference_changed(self) -> None:
        self._ref_cache = {}

    # -- features --------------------------------------------------------------------------------

    def observe(self, samples: np.ndarray) -> None:
        """One microphone block (BLOCK samples, as received)."""
        self._mic.append(envelope(np.concatenate((self._last_samples, samples))))
        self._last_samples = samples
        self._observed += 1
        if self.lag is not None and self._observed % self.settings.every == 0:
            self._search(self._observed)

    def _mic_envelopes(self, start: int, stop: int) -> np.ndarray | None:
        """Microphone envelopes of blocks [start, stop), or None if not all are kept."""
        first = self._observed - len(self._mic)
        if start < first or stop > self._observed:
            return None
        return np.array([self._mic[i - first] for i in range(start, stop)])

    def _ref_envelope(self, block: int) -> np.ndarray:
        cached = self._ref_cache.get(block)
        if cached is None:
            start = block * BLOCK
            cached = envelope(self._reference(start - BLOCK, start + BLOCK))
            if len(self._ref_cache) > 4096:
                self._ref_cache = {}
            self._ref_cache[block] = cached
        return cached

    def _ref_envelopes(self, start: int, stop: int) -> np.ndarray:
        return np.array([self._ref_envelope(b) for b in range(start, stop)])

    # -- delay search ----------------------------------------------------------------------------

    def _search(self, end: int, *, window: int = WINDOW) -> int | None:
        """The delay (blocks) whose reference envelope explains the `window` blocks before
        `end`, or None; on a find the lock and the band gains are updated."""
        s = self.settings
        mic = self._mic_envelopes(end - window, end)
        if mic is None or mic.max() < 10 * np.log10(self._audible + FLOOR):
            return None
        ref = self._ref_envelopes(end - window - self._max_block, end - self._min_block)
        if ref.max() <= 10 * np.log10(FLOOR) + 1:
            return None  # nothing was due
        scores = _correlations(mic, ref)  # row k: delay min_block + k
        best = int(np.argmax(scores))
        others = np.concatenate((scores[: max(0, best - 3)], scores[best + 4 :]))
        beaten = others.size and scores[best] - others.max() < s.lock_margin
        if scores[best] < s.lock_score or beaten:
            return None
        lag = self._min_block + best
        aligned = ref[ref.shape[0] - window - best : ref.shape[0] - best]
        loud = mic.max(axis=1) > 10 * np.log10(self._audible + FLOOR)
        # The upper quartile: the prediction must cover the echo's loud parts.
        gain = np.percentile((mic - aligned)[loud], 75, axis=0)
        if self.lag is not None and abs(lag - self.lag) <= SMEAR:
            self._gain = 0.5 * self._gain + 0.5 * gain
            return lag
        # A new delay: the path from speaker to microphone is the same, its gain too.
        self._gain = gain if self.lag is None else np.maximum(self._gain, gain)
        self.lag = lag
        self.locks += 1
        return lag

    # -- gating ----------------------------------------------------------------------------------

    def _explained(self, block: int) -> bool:
        mic = self._mic_envelopes(block, block + 1)
        if mic is None:
            return False
        ref = self._ref_envelopes(block - self.lag - SMEAR, block - self.lag + SMEAR + 1)
        predicted = ref.max(axis=0) + self._gain
        excess = np.maximum(0.0, mic[0] - predicted - self.settings.margin_db)
        return float(excess.mean()) <= self.settings.excess_db

    def gate(self, block: int, pcm: bytes, audible: bool, *, bypass: bool = False) -> bytes:
        """One block of the guard's output (at block index `block`): what goes on now.

        `bypass`: the linear filter is cancelling (its lock is proven): the block passes, after
        anything held."""
        if not self.settings.enabled:
            return pcm
        if bypass:
            self._doubt_from = self._first_audible = None
            return self._gate_held() + pcm if self.lag is not None else self._release() + pcm
        if not self._due_near_position(block * BLOCK):
            self._first_audible = None
            return self._release() + pcm
        if self.lag is None:
            return self._before_lock(block, pcm, audible)
        if self._held:
            self._held.append((block, pcm, audible))
            return self._resolve()
        if not audible or self._explained(block):
            return bytes(len(pcm))
        self._doubt_from = block
        self._held.append((block, pcm, audible))
        return self._resolve()

    def _before_lock(self, block: int, pcm: bytes, audible: bool) -> bytes:
        if self._passing:
            if self._observed % self.settings.every == 0 and audible:
                self._search(self._observed)
            if self.lag is None:
                return pcm
            self._passing = False
            return self.gate(block, pcm, audible)
        if not self._held and not audible:
            return pcm
        if self._first_audible is None:
            self._first_audible = block
        self._held.append((block, pcm, audible))
        if self._search(self._observed) is not None:
            self._first_audible = None
            return self._gate_held()
        if self._observed - self._first_audible >= self._give_up:
            self._passing, self._first_audible = True, None
            return self._release()
        return b""

    def _resolve(self) -> bytes:
        """An unexplained sound is held: decide once `doubt_s` of it is in."""
        if self._observed - self._doubt_from < self._doubt:
            return b""
        # Only what was heard since the sound began: before it, the echo was explained. A
        # delay found there (the echo moved) is adopted; either way each held block is then
        # muted if the echo explains it and released as it was if not (a person).
        self._search(self._doubt_from + self._doubt, window=self._doubt)
        self._doubt_from = None
        return self._gate_held()

    def _gate_held(self) -> bytes:
        held, self._held = self._held, []
        out = bytearray()
        for block, pcm, audible in held:
            out += bytes(len(pcm)) if not audible or self._explained(block) else pcm
        return bytes(out)

    def _release(self) -> bytes:
        held, self._held = self._held, []
        return b"".join(pcm for _, pcm, _ in held)
