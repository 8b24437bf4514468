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
and at most 0.80 at any other delay. So the gate, on the filter's output,

1. **finds the delay** by correlating the microphone's envelope (mean removed per band) with the
   reference's over the delay range, every `every` blocks while agent audio is due; a peak of
   `lock_score` that beats every delay more than 3 blocks away by `lock_margin` locks it,
   if the harmonics agree: within 4 blocks of it, the microphone's combs (echo_fine.py) must
   match the reference's at one offset (10 ms steps), median `COMB_LOCK`. A person in the
   agent's voice lines up with the reference's envelope (0.85-0.95) but not its comb (median
   0.16): with no echo the gate never locks (before the comb: 17 locks in 20 barge-ins);
2. **learns each band's gain** from the reference to the filter's *output*, where that output
   follows the reference (`learn_score`: it is echo, not a person and not silence): the upper
   quartile in dB. Where the filter cancels, what is left of the echo is quiet and a person
   talking over it stands far above it; where it cannot, the output is the echo as heard.
   Only from blocks whose comb matches the reference's (the echo's own harmonics), where the
   reference was playing and, once there are gains, that they nearly explain: a person in
   the agent's voice starting as far into an answer as an echo lags lines up with the
   reference's onset (envelopes 0.85-0.95), and their level over the reference's silences
   was learned as +26 dB gains. (The guard's sample-level correlation would tell them apart,
   but finds no delay in Chromium's processed echo; the comb does, to 10 ms.)
3. **mutes a block the echo explains**: its bands exceed the predicted echo (the reference's
   band energies at the delay, the loudest within one block either side for the jitter of
   chunk placement, plus the gain) by more than `margin_db` by less than `excess_db` on
   average;
4. **releases at once a block far above the predicted echo when the lock is fresh** (by
   `sure_db`; the last two periodic searches found the echo at the lock's delay): someone
   talking over the agent, not the echo at a new delay;
5. otherwise **holds a block it does not explain** (a person, or the echo at a new delay: a
   playback stall) until `doubt_s` of microphone from it is in, then searches that span alone:
   a delay found there is adopted; if `PERSON_BLOCKS` held blocks are still unexplained, it is
   a person and the hold is released whole, else each held block is muted if the echo
   explains it and released as it was if not. Before the first lock, audible blocks are held
   up to `give_up_s` from the first, then released (a headset: no echo).
   Once a person is found by a hold (5), every audible block passes, explained or not, until a
   search over a window free of their unexplained blocks finds the echo alone again: a person
   as loud as the echo has parts of a word it could explain on its own, and muting those (or
   ending the pass on a search that still found the echo under the word's start) left the VAD
   100 ms of a short first word ("Wait,"), and the turn opened on the next words, 0.7-0.9 s
   late;
6. **lets a person through at their third block** in a row (`PERSON_COMBS`) whose comb does
   not match the reference's at the offset (`COMB_ECHO`), as heard or after the filter:
   released with what is held, and all they say passes as after a hold (5). Echo alone has
   such runs of two at most (Chromium's, recorded: once its offset is held through 10-30 ms
   wobbles, `COMB_KEEP`); a person over it starts one at once. The envelope cannot do this:
   over a loud echo a person's first word is "explained", and they waited for `doubt_s` or
   the next words (0.8-0.9 s late in 3 of 5 Chromium recordings). A block whose comb matches
   only weakly (under `COMB_WEAK`) and that the envelope does not explain either counts too:
   a person 6 dB under the echo leaves it half their comb (0.35-0.5), and was heard 1 s late
   (on their next words); on the echo alone such blocks stand at most 0.6 dB over the
   prediction (p99 of 169, 25 Chromium recordings), never over `excess_db`;
7. **stands aside** while it has no gains of its own and the linear filter is cancelling (its
   lock proven and matching): the filter's output is quiet where the echo was, there is
   nothing to learn from it, and what is audible is not our echo. Holding there would only
   delay a person: it held their first 300 ms. It still searches while it stands aside: a
   filter's proof can pass on an echo it only partly cancels (processed like a browser's, a
   short answer: what it left opened a turn in 20 of 81 such echoes, 50-600 ms late, -6 to
   -20 dB); once the gate has its own lock and gains there, it gates. Before it has gains
   (what the filter leaves follows the reference's envelope too loosely to learn them, 0.0-0.6
   over an answer's first seconds) it mutes an audible output block where the microphone
   heard the echo alone: its comb matches the reference's at the echo's offset (the filter's
   delay until the gate has one) by `COMB_RESIDUE`. Those residues opened a turn in 6 of 81
   such echoes (the demo agent's welcome and two answers, 150-600 ms, -6 to -20 dB, three
   seeds) and 9 of 81 with three other seeds, now 0 of both (and 0 of 162 with six more,
   25 before: `bench/echo_sweep.py`); a person's voice over the
   echo takes the microphone's comb under it within a block (216 barge-ins over cancelled
   and processed short answers: 3 heard 20 ms later, 2 sooner, the rest unchanged).

Nothing is lost and stream time is unchanged (a held block comes out later, in order), so a
person's turn starts at the stream time they started; the VAD decides later by the hold, at
most `give_up_s` once and `doubt_s` per unexplained sound while the lock is in question.

Measured: the Chromium recordings above, replayed, 0 turn starts (without the gate: a start
within 0.3 s of the echo); tests/pipeline/test_echo.py and bench/echo.py, with an echo processed
like Chromium's (`capture_processing` in tests/support/echo.py), 0 starts; a person over it is
heard, but a first short word said over a loud processed echo can be lost.

Barge-in (bench/echo.py, a person over the agent's echo, 12 points per row, stream time at
the VAD's decision): before points 4 and 6 the gate moved the turn start from a 121-124 ms
median to 280-300 ms on every echo the linear filter cancels (it held the person's first
0.3 s, its gains never learned) and missed 1-2 of 12, in espeak's voice as in Piper's: the
voice was not the cause. With them, those rows match the gate off exactly; over an echo
processed like Chromium's (which without the gate interrupts by itself, 10-17 per minute)
the person is heard at a 174-241 ms median (before: 182-297), and a short first word ("Wait,")
over an echo as loud as the person can still be lost (1-3 of 12): open.

Since point 5's whole release, envelope only: first words lost over the processed echo in
espeak's voice 1/12, in the agent's own Piper voice 2/12 (a person 3 dB quieter than the echo,
in the same voice, stands under the sure_db release and under PERSON_BLOCKS).

With the comb (points 1, 2 and 6; bench/echo.py, 12 points per row, load 1.4-12 on 2 shared
cores): echo alone, 0 turn starts in all 13 rows, as before (the linear filter alone: 17.4 and
10.5 per minute on the two processed rows). A person over it is heard 12/12 in every row, in
espeak's voice and in the agent's own Piper voice; on the processed rows at a 137-162 ms median,
at most 221 ms (espeak), and 124-142, at most 162 ms (Piper), where the envelope alone gave
186-202, at most 683 ms (espeak) and lost 1 of 12, at most 741 ms (Piper). Elsewhere the gate
stands aside: the same figures as without it. CPU (bench/echo.py's; combs are computed only when
asked for): 1.13-1.30 ms per 100 ms of microphone while agent audio is recent, against
1.20-1.21 for the envelope alone in the same run (load 9-10).

Chromium's real echo (tests/fixtures, 15 sessions, replayed by tests/pipeline/test_echo.py;
`python -m tests.support.chromium_echo summary` prints the table): 0 turn starts from the echo
alone in 6 of 6 (the welcome, another answer, Chromium's canceller off, a noisy room; the linear
filter alone: a start 0.3 s into each), and at most 2 non-matching blocks in a row on the echo
alone in all 15 (a person needs 3; 8 more sessions recorded the same way, and two with
Chromium's suppressor and gain control or all its processing off: 1-2). A person over it, 3 dB
under the echo or 6, in Piper's voice or espeak's (the agent's own), heard 143-241 ms after
their voice starts in 8 of 9, where the envelope alone took 200-940 ms (3 of 5 over 300 ms).
The ninth: "Wait," 6 dB under the echo in a noisy room, through Chromium's noise suppressor,
keeps the echo's comb (0.5-0.9) and is explained by the envelope: heard on the next words,
725 ms after the first (a limit).

With no echo and the person in the agent's own Piper voice, the envelope alone locked on the
person (17 locks in 20 replayed barge-ins), learned them as echo and held their turn start up
to 1.07 s; with the comb it never locks, and every turn starts exactly when it does without the
gate (tests/pipeline/test_echo.py). bench/bargein.py, 20 live barge-ins per server, two runs
at load 7-13: none missed; turn.start p50/p95 150/312 and 138/300 ms with the gate, 159/752
and 139/321 ms without, 141/468 and 140/498 ms with the envelope alone (its holds: 400-530 ms
starts in both runs). At that load the wall clock varies from run to run as much as between
settings (without the gate one start took 1.1 s).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .audio import RATE
from .echo_fine import STEP, Combs, ReferenceCombs

BLOCK = 320  # 20 ms, as in echo.py
BANDS_HZ = (150.0, 3800.0)
N_BANDS = 20
FLOOR = 1e6  # band energy added before the log: quieter than the VAD's floor, so silence is flat
SMEAR = 1  # blocks either side of the delay the predicted echo takes its loudest from
PERSON_BLOCKS = 3  # a hold with this many blocks the echo does not explain is a person's
WINDOW = 15  # blocks of envelope per delay search (0.3 s)
COMB_LOCK = 0.45  # median comb match over a search window at the echo's offset (echo_fine.py)
COMB_ECHO = 0.35  # a block's comb matching the reference this well is the echo's
COMB_WEAK = 0.5  # ... unless under this and the envelope does not explain it either
COMB_RESIDUE = 0.9  # a microphone block whose comb matches this well is the echo alone
COMB_KEEP = 0.1  # the offset held stays unless another matches this much better
COMB_SPAN = 4  # blocks either side of the envelope's delay where the comb's offset is searched
PERSON_COMBS = 3  # audible blocks in a row whose comb contradicts the echo: a person


@dataclass(frozen=True)
class GateSettings:
    enabled: bool = True  # ECHO_GATE
    lock_score: float = 0.85  # envelope correlation at the echo's delay (measured 0.89-0.98)
    lock_margin: float = 0.1  # ... above any delay more than 3 blocks away (measured <= 0.80)
    learn_score: float = 0.7  # the filter's output is echo (its gains are learned) from here
    every: int = 5  # blocks between delay searches while agent audio is due
    margin_db: float = 6.0  # a band this much over the predicted echo is not echo
    excess_db: float = 2.0  # mean excess over the bands above which a block is not echo
    sure_db: float = 4.0  # ... above which, the lock confirmed, it is released without a hold
    doubt_s: float = 0.16  # an unexplained sound held this long before deciding
    give_up_s: float = 0.3  # held before the first lock, from the first audible block
    combs: bool = True  # tell a person from the echo by harmonics too (off: envelope only)

    def __post_init__(self) -> None:
        for name in ("lock_score", "learn_score"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"echo gate {name} must be in (0, 1]")
        if not 0 < self.doubt_s <= 1 or not 0 < self.give_up_s <= 2:
            raise ValueError("echo gate doubt_s must be in (0, 1] s and give_up_s in (0, 2] s")
        if self.every < 1 or self.margin_db < 0 or self.excess_db < 0:
            raise ValueError("echo gate every must be >= 1, margin_db and excess_db >= 0")
        if not self.excess_db <= self.sure_db <= 40:
            raise ValueError("echo gate sure_db must be in [excess_db, 40] dB")


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
    """Mutes blocks of the filter's output that the agent's echo explains, by spectral envelope.

    `observe()` every microphone block as it comes in (before the filter: the delay is found on
    the microphone as heard), then pass the filter's output blocks to `gate()` in order, each
    with its index (the output is the input stream, only later). `reference(start, stop)` gives
    the agent audio due in a span of samples (the guard's timeline), `due_near(position)`
    whether any was due within the delay range of a block, `min_lag`/`max_lag` the range.

    The band gains are learned on the filter's *output*: where the filter cancels the echo,
    what is left of it is quiet and a person talking over it stands far above it; where it
    cannot (a browser's processing), the output is the echo as heard and is muted.
    """

    def __init__(
        self,
        settings: GateSettings,
        reference: Callable[[int, int], np.ndarray],
        due_near: Callable[[int], bool],
        min_lag: int,
        max_lag: int,
        audible: float,
        filter_delay: Callable[[], int | None] = lambda: None,
    ):
        self.settings = settings
        self._reference = reference
        self._due_near_position = due_near
        self._filter_delay = filter_delay
        self._min_block = min_lag // BLOCK
        self._max_block = -(-max_lag // BLOCK)
        self._audible_db = 10 * np.log10(audible + FLOOR)
        self._give_up = max(1, round(settings.give_up_s * RATE / BLOCK))
        self._doubt = max(1, round(settings.doubt_s * RATE / BLOCK))
        self._heard = _Envelopes(WINDOW + 2 * self._give_up + self._doubt + 64)  # microphone
        self._out = _Envelopes(WINDOW + 1)  # the filter's output
        self._heard_combs = Combs(WINDOW + 2 * self._give_up + self._doubt + 64)
        self._out_combs = Combs(WINDOW + 1)
        self._ref_combs = ReferenceCombs(reference)
        self.offset: int | None = None  # samples from due to heard, to 10 ms: the comb's
        self._contradictions = 0  # audible blocks in a row whose comb is not the echo's
        self._ref_cache: dict[int, np.ndarray] = {}
        self.lag: int | None = None  # blocks from due to heard, once locked
        self._gain: np.ndarray | None = None  # dB from reference to output, per band
        self._held: list[tuple[int, bytes, bool]] = []  # (block, pcm, audible)
        self._doubt_from: int | None = None  # block where an unexplained sound began
        self._first_audible: int | None = None  # before the first lock
        self._passing = False  # before the first lock: gave up (no echo), passing
        self._confirmed = 0  # periodic searches in a row that found the echo at `lag`
        self._person = False  # an unexplained sound passing without a hold, while it lasts
        self._whole = False  # a person found by a hold: passing all they say, while it lasts
        self._person_last = -WINDOW  # the last block of theirs the echo did not explain
        self.locks = 0  # delay locks and changes, for tests and benchmarks

    @property
    def ready(self) -> bool:
        """Locked with its gains learned: it tells the echo from a person on its own."""
        return self.lag is not None and self._gain is not None

    def reference_changed(self) -> None:
        self._ref_cache = {}
        self._ref_combs.changed()

    def observe(self, samples: np.ndarray) -> None:
        """One microphone block (BLOCK samples) as received."""
        if self.settings.enabled:
            self._heard.add(samples)
            self._heard_combs.add(samples)

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

    def _search(self, end: int, window: int = WINDOW, *, learn: bool = True) -> int | None:
        """The delay (blocks) whose reference envelope explains the microphone's `window`
        blocks before `end`, or None. A find updates the lock and, with `learn`, the band
        gains (from the output of the same blocks)."""
        s = self.settings
        heard = self._heard.get(end - window, end)
        if heard is None or heard.max() < self._audible_db:
            return None
        ref = self._ref_envelopes(end - window - self._max_block, end - self._min_block)
        if ref.max() <= 10 * np.log10(FLOOR) + 1:
            return None  # nothing was due
        scores = _correlations(heard, ref)  # row k: delay min_block + k
        best = int(np.argmax(scores))
        others = np.concatenate((scores[: max(0, best - 3)], scores[best + 4 :]))
        beaten = others.size and scores[best] - others.max() < s.lock_margin
        if scores[best] < s.lock_score or beaten:
            return None
        lag = self._min_block + best
        if s.combs:
            offset = self._comb_search(end, window, lag)
            if offset is None:
                return None  # the envelope follows the reference, its harmonics do not
            self.offset = offset
        if self.lag is None or abs(lag - self.lag) > SMEAR:
            self.lag = lag
            self.locks += 1
        out = self._out.get(end - window, end) if learn else None
        if out is not None:
            aligned = ref[ref.shape[0] - window - best : ref.shape[0] - best]
            self._learn(out, aligned, end - window)
        return lag

    def _comb_search(self, end: int, window: int, lag: int) -> int | None:
        """The offset (samples, 10 ms steps, within COMB_SPAN blocks of the envelope's delay
        `lag`) where the microphone's combs over `window` blocks before `end` match the
        reference's, median at least COMB_LOCK; None if none does."""
        heard = [(b, self._heard_combs.get(b)) for b in range(end - window, end)]
        heard = [(b, h) for b, h in heard if h is not None and h.any()]
        if len(heard) < 3:
            return None
        medians = {}
        for offset in range((lag - COMB_SPAN) * BLOCK, (lag + COMB_SPAN) * BLOCK + 1, STEP):
            scores = [self._ref_combs.match(h, b, offset, steps=0) for b, h in heard]
            scores = [x for x in scores if x is not None]
            if len(scores) >= 3:
                medians[offset] = float(np.median(scores))
        if not medians or max(medians.values()) < COMB_LOCK:
            return None
        best = max(medians, key=medians.__getitem__)
        # Chromium's delay wobbles by 10-30 ms from one window to the next: the offset held
        # stays while it is nearly as good (a jump of 30 ms made five echo blocks a "person").
        kept = medians.get(self.offset, -1.0) if self.offset is not None else -1.0
        return self.offset if kept >= COMB_LOCK and kept >= medians[best] - COMB_KEEP else best

    def _comb_match(self, block: int) -> float | None:
        """How well the block's comb matches the reference's at the echo's offset, as heard or
        after the filter, whichever matches better (the filter's partial subtraction can
        blur a processed echo's comb: 0.2 after it where the microphone had 0.7); None where
        there is nothing to compare (an unvoiced reference, flat audio)."""
        if self.offset is None:
            return None
        scores = [
            self._ref_combs.match(comb, block, self.offset)
            for comb in (self._heard_combs.get(block), self._out_combs.get(block))
            if comb is not None and comb.any()
        ]
        scores = [x for x in scores if x is not None]
        return max(scores) if scores else None

    def _residue(self, block: int, filter_delay: int) -> bool:
        """The microphone block is the echo alone: its comb is the reference's at the echo's
        offset (the filter's delay before the gate has one of its own)."""
        comb = self._heard_combs.get(block)
        if comb is None or not comb.any():
            return False
        offset = self.offset if self.offset is not None else filter_delay
        match = self._ref_combs.match(comb, block, offset)
        return match is not None and match >= COMB_RESIDUE

    def _learn(self, out: np.ndarray, aligned: np.ndarray, first: int) -> None:
        """Band gains from the reference to the filter's output, where that output is the echo:
        its envelope follows the reference's too (not a person's voice, not silence)."""
        # Only blocks where the reference was playing: over its silences (a pause, the part
        # dropped when the agent was interrupted) an audible output is someone else, and its
        # level over the silent reference learned as a gain made a person "echo" (+26 dB).
        loud = (out.max(axis=1) >= self._audible_db) & (aligned.max(axis=1) >= self._audible_db)
        # ... and whose harmonics are the reference's: a person in the agent's voice has the
        # envelope of speech, not the comb of the words the agent was saying then.
        if self.settings.combs:
            matches = [self._comb_match(first + i) for i in range(out.shape[0])]
            loud &= np.array([m is not None and m >= COMB_ECHO for m in matches])
        if self._gain is not None:  # ... and, once there are gains, what they nearly explain
            over = np.maximum(0.0, out - aligned - self._gain - self.settings.margin_db)
            loud &= over.mean(axis=1) <= self.settings.sure_db
        if loud.sum() < 3 or _correlations(out, aligned)[0] < self.settings.learn_score:
            return
        # The upper quartile: the prediction must cover the echo's loud parts.
        gain = np.percentile((out - aligned)[loud], 75, axis=0)
        self._gain = gain if self._gain is None else 0.5 * self._gain + 0.5 * gain

    # -- gating ----------------------------------------------------------------------------------

    def _excess(self, block: int) -> float:
        """How far (dB, mean over the bands) the output block stands above the predicted echo
        plus `margin_db`; infinite when there is no prediction."""
        out = self._out.get(block, block + 1)
        if out is None or self._gain is None:
            return float("inf")
        ref = self._ref_envelopes(block - self.lag - SMEAR, block - self.lag + SMEAR + 1)
        predicted = ref.max(axis=0) + self._gain
        return float(np.maximum(0.0, out[0] - predicted - self.settings.margin_db).mean())

    def _explained(self, block: int) -> bool:
        return self._excess(block) <= self.settings.excess_db

    def gate(self, block: int, pcm: bytes, audible: bool) -> bytes:
        """One block of the filter's output (block index `block`): what goes on now."""
        if not self.settings.enabled:
            return pcm
        samples = _samples(pcm)
        self._out.add(samples)
        self._out_combs.add(samples)
        if not self._due_near_position(block * BLOCK):
            self._first_audible = self._doubt_from = None
            self._confirmed, self._person, self._whole = 0, False, False
            self._contradictions = 0
            return self._release() + pcm
        if (block + 1) % self.settings.every == 0 and self.lag is not None:
            lag = self.lag
            found = self._search(block + 1)
            same = found is not None and abs(found - lag) <= SMEAR
            self._confirmed = self._confirmed + 1 if same else 0
            if self._confirmed:
                self._person = False
            if self._confirmed and block + 1 - WINDOW > self._person_last:
                self._whole = False  # the echo alone again, over a window free of them
        if self.lag is None or self._gain is None:
            return self._before_lock(block, pcm, audible)
        done = b""
        if self._held and self._doubt_from is None:  # held while looking for the first lock
            self._first_audible = None
            done = self._gate_held()
        excess = self._excess(block)
        match = self._comb_match(block) if audible and self.settings.combs else None
        # Not the echo's comb; or only weakly it and louder than the echo explains: a person
        # 6 dB under the echo leaves half its comb (0.35-0.5) where they are heard over it.
        weak = match is not None and match < COMB_WEAK and excess > self.settings.excess_db
        contradicts = (match is not None and match < COMB_ECHO) or weak
        self._contradictions = self._contradictions + 1 if contradicts else 0
        if self._contradictions >= PERSON_COMBS and not self._whole:
            # The comb of the words being played is not in these blocks: someone is talking
            # over the agent. All they say passes, from what is held, until a search finds
            # the echo alone again.
            self._doubt_from = None
            self._whole, self._person_last = True, block
            return done + self._release() + pcm
        if self._held:
            self._held.append((block, pcm, audible))
            return self._resolve()
        if self._whole and audible:
            # Someone is talking over the agent: their words stay whole, also where the echo
            # would explain a block on its own (muted, a short first word lost its middle).
            if excess > self.settings.excess_db or contradicts:
                self._person_last = block
            return done + pcm
        if not audible or (excess <= self.settings.excess_db and not contradicts):
            return done + bytes(len(pcm))
        if self._person or (self._confirmed >= 2 and excess >= self.settings.sure_db):
            # The last two searches found the echo at the lock's delay (it has not moved), and
            # this block stands far above it: someone talking over it, released at once.
            # Their next unexplained blocks too, until a search finds the echo again. Not
            # all they say, as after a hold: one Chromium echo block in about eight runs
            # stands this far above, and passing all for its "person" let 0.6 s of echo in.
            self._person = True
            return done + pcm
        self._doubt_from = block
        self._held.append((block, pcm, audible))
        return done + self._resolve()

    def _before_lock(self, block: int, pcm: bytes, audible: bool) -> bytes:
        filter_delay = self._filter_delay()
        if filter_delay is not None:
            # The linear filter has proven its lock and is cancelling: its output is quiet
            # where the echo was, so there is nothing to learn gains from, and what is audible
            # is mostly not our echo. No hold. But a proof can pass on an echo the filter only
            # partly cancels (a browser's processing, -12 to 0 dB band gains that change every
            # 20 ms: 8 dB over its first 0.3 s), and what it leaves follows the reference: the
            # gate keeps looking, and gates once it has learned that residue's gains.
            self._first_audible = None
            if (block + 1) % self.settings.every == 0 and audible:
                self._search(block + 1)
            if self.lag is None or self._gain is None:
                # No gains yet (the residue's envelope follows the reference's too loosely
                # to learn them: 0.0-0.6 on a short answer's first second): what the
                # microphone heard as the echo alone, to its harmonics, is muted.
                residue = audible and self.settings.combs and self._residue(block, filter_delay)
                return self._release() + (bytes(len(pcm)) if residue else pcm)
            return self._release() + (bytes(len(pcm)) if self._explained(block) else pcm)
        if self._passing:
            if (block + 1) % self.settings.every == 0 and audible:
                self._search(block + 1)
            if self.lag is None or self._gain is None:
                return pcm
            self._passing = False
            return self._gate_held() + (bytes(len(pcm)) if self._explained(block) else pcm)
        if not self._held and not audible:
            return pcm
        if self._first_audible is None:
            self._first_audible = block
        self._held.append((block, pcm, audible))
        if self._search(block + 1) is not None and self._gain is not None:
            self._first_audible = None
            return self._gate_held()
        if block + 1 - self._first_audible >= self._give_up:
            self._passing, self._first_audible = True, None
            return self._release()
        return b""

    def _resolve(self) -> bytes:
        """An unexplained sound is held: decide once `doubt_s` of it has been heard (the
        microphone is usually ahead of the output: then at once)."""
        if self._heard.count < self._doubt_from + self._doubt:
            return b""
        # Only what was heard since the sound began: before it, the echo was explained. A
        # delay found there (the echo moved) is adopted; then PERSON_BLOCKS blocks still
        # unexplained are a person's (all of it released), fewer are echo the prediction
        # missed (each muted if the echo explains it, released as it was if not).
        self._search(self._doubt_from + self._doubt, self._doubt, learn=False)
        self._doubt_from = None
        unexplained = [b for b, _, audible in self._held if audible and not self._explained(b)]
        if len(unexplained) >= PERSON_BLOCKS:  # a person: released whole, and passing on
            self._whole, self._person_last = True, unexplained[-1]
            return self._release()
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


def _samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


class _Envelopes:
    """The envelopes of the latest blocks of one stream, by block index. Each is computed when
    first asked for: most blocks never are (no agent audio is due, or it is not searched), and
    computing every block's cost 0.25 ms per 100 ms of microphone in every session, eight times
    what the whole guard costs while no agent audio is due."""

    def __init__(self, keep: int):
        self._kept: deque[list] = deque(maxlen=keep)  # [block before, block, envelope or None]
        self._last = np.zeros(BLOCK)
        self.count = 0  # blocks added

    def add(self, samples: np.ndarray) -> None:
        self._kept.append([self._last, samples, None])
        self._last = samples
        self.count += 1

    def get(self, start: int, stop: int) -> np.ndarray | None:
        """Envelopes of blocks [start, stop), or None unless all are kept."""
        first = self.count - len(self._kept)
        if start < first or stop > self.count:
            return None
        return np.array([self._envelope(self._kept[i - first]) for i in range(start, stop)])

    @staticmethod
    def _envelope(kept: list) -> np.ndarray:
        if kept[2] is None:
            kept[2] = envelope(np.concatenate((kept[0], kept[1])))
        return kept[2]
