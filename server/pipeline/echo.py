"""Echo defence: the agent's own voice coming back through the microphone must not start a turn.

A user on speakers (no headset, weak or no browser echo cancellation: Chrome's canceller does not
cover audio played through WebAudio) sends the agent's voice back to us some hundreds of
milliseconds after it played. Fed to the VAD as is, it interrupts the agent with its own words.
The pipeline knows exactly what it sent and when each chunk was due to play, so `EchoGuard`
removes that signal from the microphone before the VAD (and the recogniser) hear it:

    client.audio ─► resample to 16 kHz ─► EchoGuard.clean() ─► TurnDetector.feed()
                                      (filter, then EchoGate)
                                              ▲
    response.audio ─► EchoGuard.add_reference(pcm, due_stream_s)

Everything is in stream time: microphone samples received / 16000, the timeline of
`TurnDetector` and `StreamClock`. The reference is placed at the sample where it was due. Five
parts:

1. **Delay search** (GCC-PHAT). Between "due" and "heard" lie the browser's output latency, the
   network and the microphone's input latency: 50 ms to about a second, unknown, changing when
   playback stalls. The last `search_window_s` of microphone is cross-correlated with the
   reference over the whole `min_delay_s`..`max_delay_s` range in one FFT, phase-transform
   weighted, 100-3800 Hz (the band an 8 kHz microphone still carries): every `search_every_s`
   until locked, every `track_every_s` after. A peak `lock_score` (30) times above the mean
   locks the delay; a different delay replaces it when found twice, or once while the
   cancellation is failing. Measured on Piper speech over 120 searches each: without echo (hiss,
   or another voice) the score never passed 23; with echo at -6 to -30 dB its median is 35-70.
2. **Cancellation**: a partitioned frequency-domain NLMS filter (overlap-save, 20 ms blocks,
   `tail_s` = 120 ms of echo path from 4 ms before the found delay; Speex's MDF family). It
   learns the path's gain and colour (speaker, room reverberation, an 8 kHz microphone's
   low-pass) and subtracts the predicted echo sample by sample: the person's voice passes
   unchanged, with no added latency. At a lock the filter starts as the delay times its
   least-squares gain; the step shrinks while the residual is louder than the predicted echo
   (someone talking over it), so a person does not pull the filter off the echo. A 20 ms path
   (one partition) left a reverberant room's tail (rt60 0.3 s) loud enough to interrupt at
   -6 dB; 120 ms cancels it (bench/echo.py).
3. **Holding, then muting what can only be echo.** (a) While agent audio is due and no delay is
   known yet (the start of a session's first answer), the microphone is held from its first
   audible block. (b) After a lock, held output stays held until the cancellation proves the
   lock: the echo `converged_db` down (at once on a clean path) or `verified_db` over
   `converge_s`; what was held then comes out as silence (it was echo). A lock not proven (a
   word the person shares with the agent, said in the same synthetic voice, as tests do) and
   `give_up_s` (0.3 s) held without a lock (a headset) release what was held as it was, and
   the guard stops holding. Nothing is lost and stream time is unchanged: the decision is at
   most 0.6 s late, once per session. The output is silence (c) for blocks whose residual is
   `leak_margin_db` under the predicted echo, held over the room's decay (what the filter
   missed); (d) while the lock is in doubt, at most `relock_s`: subtracting made the microphone
   louder for 60 ms (playback stalled, so the echo moved, or the audio never played) — a
   search of the last 0.2 s then either finds the delay again or relocks. Sound much louder
   than our echo has lately been is never muted in doubt: that is a person.
4. **Passing the microphone** when no agent audio was due within the delay range (a few list
   checks per block), or where subtracting made it louder (the reference did not play).
5. **The gate** (echo_gate.py) after all this: echo a browser's own processing made
   non-linear (Chromium's canceller, suppressor and gain control leave it correlating 0.1-0.8
   with what was sent) is not subtracted enough; its spectral envelope and its harmonics
   (echo_fine.py) still follow the reference, and blocks they explain are muted, while a
   person, whose harmonics are not the words being played, passes. On by default
   (`EchoSettings.gate`, `ECHO_GATE`); it stands aside while the filter is cancelling
   (`_cancelling()`), so a person is heard as fast.

The lock and the learned path are kept across agent turns: later answers start cancelled. The
session tells the guard what will not play: `drop_reference_after(stream_s)` when the agent is
interrupted, so the guard stops working on the microphone soon after.

Measured (bench/echo.py, real Piper speech, the real TurnDetector; 34 s of agent speech per
row): with the guard, 0 turn starts from echo at 50/150/300/900 ms, -6 and -20 dB, an 8 kHz
microphone, a room with rt60 0.3 s and a 250 ms playback stall (without it: 5-17 per minute);
a person talking over the agent (12 times per row) opens a turn 107-143 ms (median 121-124)
after their voice starts; without echo and guard 107-124 ms. Each lock took 50-160 ms of echo.
CPU (2 shared cores, under load): 0.9-1.1 ms per 100 ms of microphone audio while agent audio
is recent, 0.03 ms otherwise.

Limits, measured the same way: a person 9 dB or more quieter than the echo at the microphone can
lose a first short word to (c) and open the turn with the next (0.7-1 s); a 10 dB margin would
keep it but let reverberant echo through. (a) and (b) delay the VAD's decisions, in wall-clock
time, once per session: 0.3 s with a headset, 50-160 ms with speakers.
"""

from __future__ import annotations

import bisect
import enum
import time
from dataclasses import dataclass, field

import numpy as np

from .audio import RATE
from .echo_gate import EchoGate, GateSettings

BLOCK = 320  # 20 ms: one VAD frame per block
PRE_S = 0.004  # the echo-path filter starts this far before the found delay
BAND_HZ = (100.0, 3800.0)  # used by the delay search: present at 8 kHz and 16 kHz microphones
DOUBT_WINDOW_S = 0.2  # microphone audio searched while the lock is in doubt
AUDIBLE = 0.002  # rms (full scale 1): half the VAD's energy floor, can never open a turn


class EchoState(enum.Enum):
    SEARCHING = "searching"  # agent audio is due, its echo's delay not yet found: holding
    LOCKED = "locked"  # the delay is known: cancelling
    NO_ECHO = "no_echo"  # none found in time (a headset): passing, still searching


@dataclass(frozen=True)
class EchoSettings:
    enabled: bool = True
    min_delay_s: float = 0.0  # earliest the echo may arrive after its due time
    max_delay_s: float = 1.2  # latest: output latency + network + input latency
    search_window_s: float = 0.5  # microphone audio correlated per delay search
    search_every_s: float = 0.1  # while no delay is locked, or cancelling stopped working
    track_every_s: float = 0.5  # while locked and cancelling: watching for a changed delay
    lock_score: float = 30.0  # correlation peak over its mean that counts as found
    give_up_s: float = 0.3  # microphone held while searching before deciding it is no echo
    step: float = 0.5  # NLMS step size (0..1]
    tail_s: float = 0.12  # echo path length modelled after the delay (room reverberation)
    leak_margin_db: float = 6.0  # a residual this far below the predicted echo is muted
    room_rt60_s: float = 0.4  # the predicted echo is held this long (decaying) for reverb
    relock_s: float = 0.5  # muting after the cancellation stops matching, while re-searching
    converged_db: float = 20.0  # echo cancelled this much right after a lock proves it
    converge_s: float = 0.3  # ... or by then, `verified_db` overall; else the lock was wrong
    verified_db: float = 8.0  # measured: true locks 10-26 dB (echo -6 to -30 dB), a shared word 0
    max_reference_s: float = 120.0  # agent audio held at once; more is refused (and counted)
    gate: GateSettings = field(default_factory=GateSettings)  # the envelope gate (echo_gate.py)

    def __post_init__(self) -> None:
        if not self.min_delay_s < self.max_delay_s:
            raise ValueError("echo min_delay_s must be below max_delay_s")
        if not 0 < self.step <= 1:
            raise ValueError("echo step must be in (0, 1]")


def _db(energy: float, residual: float) -> float:
    return 10 * np.log10((energy + 1.0) / (residual + 1.0))


def _samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.float64)


class EchoGuard:
    """Removes the agent's own voice from one session's microphone stream (16 kHz PCM16).

    Feed every microphone chunk through `clean()` in order; hand it every chunk of agent audio
    with `add_reference()` when it is sent. One guard per session; not thread-safe.
    """

    def __init__(self, settings: EchoSettings | None = None):
        self.settings = s = settings or EchoSettings()
        self._min_lag = round(s.min_delay_s * RATE)
        self._max_lag = round(s.max_delay_s * RATE)
        self._pre = round(PRE_S * RATE)
        self._doubt_window = round(DOUBT_WINDOW_S * RATE) // BLOCK * BLOCK
        self._window = max(BLOCK, round(s.search_window_s * RATE) // BLOCK * BLOCK)
        self._leak_ratio = 10 ** (-s.leak_margin_db / 10)
        self._audible = (AUDIBLE * 32768) ** 2 * BLOCK  # block energy
        self._tail_decay = 10 ** (-6 * BLOCK / (s.room_rt60_s * RATE))  # -60 dB per rt60
        self._echo_envelope = 0.0  # predicted echo energy per block, held over the room's tail
        self._doubt_since: int | None = None  # where the cancellation stopped matching
        self._mismatches = 0  # blocks in a row where subtracting made the signal louder
        self._echo_peak = 0.0  # the loudest predicted echo lately (block energy)
        self._peak_decay = 10 ** (-0.6 * BLOCK / RATE)  # forgets 6 dB per second
        self._search_blocks = max(1, round(s.search_every_s * RATE / BLOCK))
        self._track_blocks = max(1, round(s.track_every_s * RATE / BLOCK))
        span = self._window + self._max_lag - self._min_lag
        self._nfft = 1 << (span - 1).bit_length()
        freqs = np.fft.rfftfreq(self._nfft, 1 / RATE)
        self._band = (freqs >= BAND_HZ[0]) & (freqs <= BAND_HZ[1])
        self._chunks: list[tuple[int, np.ndarray]] = []  # (due sample, reference), in due order
        self._reference_held = 0  # samples of reference held
        self._mic = np.zeros(self._window)  # the latest microphone samples, for the search
        self._partial = b""
        self.position = 0  # microphone samples consumed (whole blocks)
        self.state = EchoState.SEARCHING
        self.delay: int | None = None  # samples from due to heard, once locked
        self._candidate: int | None = None
        self._blocks_since_search = 0
        self._withheld: list[tuple[int, bytes]] = []  # (position, block) held while searching
        parts = max(1, round(s.tail_s * RATE / BLOCK))
        # The echo path in the frequency domain, one row per 20 ms of it.
        self._weights = np.zeros((parts, BLOCK + 1), dtype=np.complex128)
        self._power = np.zeros(BLOCK + 1)  # reference power per bin, smoothed
        self._frame_spectra: dict[int, np.ndarray] = {}  # reference frames, transformed
        self._next_constrained = 0
        self._converging_blocks: int | None = None  # blocks since the lock, until proven
        self._held_after_lock: list[bytes] = []  # microphone held until the lock is proven
        self._proof = [0.0, 0.0]
        self._mic_energy = self._residual_energy = 0.0
        self.refused_reference_s = 0.0
        self.gate = EchoGate(
            s.gate, self._reference, self._reference_near, self._min_lag, self._max_lag,
            self._audible, self._cancelling_delay,
        )  # fmt: skip
        self._emitted = 0  # samples output (whole blocks): the gate's timeline
        self._cpu_s = 0.0  # this thread's CPU in clean(), since take_cpu_s()

    def _cancelling_delay(self) -> int | None:
        """The filter's delay (samples) while it is cancelling, else None."""
        return self.delay if self._cancelling() else None

    def _cancelling(self) -> bool:
        """Locked, the lock proven, and the cancellation matching the microphone."""
        return (
            self.state == EchoState.LOCKED
            and self._converging_blocks is None
            and self._doubt_since is None
        )

    # -- reference -------------------------------------------------------------------------------

    def add_reference(self, pcm16: bytes, due_stream_s: float) -> None:
        """Agent audio (16 kHz PCM16) that the client will play from `due_stream_s` on."""
        samples = _samples(pcm16)
        if samples.size == 0:
            return
        start = round(due_stream_s * RATE)
        if self._reference_held + samples.size > self.settings.max_reference_s * RATE:
            self.refused_reference_s += samples.size / RATE
            return
        bisect.insort(self._chunks, (start, samples), key=lambda chunk: chunk[0])
        self._reference_held += samples.size
        self._frame_spectra = {}
        self.gate.reference_changed()

    def drop_reference_after(self, stream_s: float) -> None:
        """Agent audio due after `stream_s` will not play (the agent was interrupted)."""
        cut = round(stream_s * RATE)
        kept = []
        for start, samples in self._chunks:
            if start < cut:
                kept.append((start, samples[: cut - start]))
        self._chunks = kept
        self._reference_held = sum(c.size for _, c in kept)
        self._frame_spectra = {}
        self.gate.reference_changed()

    def _overlapping(self, start: int, stop: int) -> list[tuple[int, np.ndarray]]:
        """The reference chunks due within [start, stop). Chunks are sorted by due time and
        old ones forgotten, so only those due before `stop` are looked at."""
        last = bisect.bisect_left(self._chunks, stop, key=lambda chunk: chunk[0])
        return [(d, c) for d, c in self._chunks[:last] if d + c.size > start]

    def _reference(self, start: int, stop: int) -> np.ndarray:
        """The reference due in [start, stop), zeros where nothing was due."""
        out = np.zeros(stop - start)
        for due, samples in self._overlapping(start, stop):
            lo, hi = max(start, due), min(stop, due + samples.size)
            out[lo - start : hi - start] = samples[lo - due : hi - due]
        return out

    def _reference_near(self, position: int) -> bool:
        """Was agent audio due within the delay range of the block at `position`?"""
        start = position - self._max_lag - self._window
        return bool(self._overlapping(start, position + BLOCK - self._min_lag))

    def _forget_old_reference(self) -> None:
        horizon = self.position - self._max_lag - self._window - 2 * BLOCK
        if self._chunks and self._chunks[0][0] + self._chunks[0][1].size <= horizon:
            self._chunks = [(d, c) for d, c in self._chunks if d + c.size > horizon]
            self._reference_held = sum(c.size for _, c in self._chunks)

    # -- microphone ------------------------------------------------------------------------------

    def clean(self, mic_pcm16: bytes) -> bytes:
        """The microphone with the agent's echo removed, for the VAD and the recogniser.

        Works in 20 ms blocks: returns the blocks decided so far, in order (a partial block
        waits for the next call; while the first echo is searched for, up to `give_up_s` is
        held). The output stream is the input stream, sample for sample, only later, so stream
        time stays the count of samples fed.
        """
        started = time.thread_time()
        try:
            return self._clean(mic_pcm16)
        finally:
            self._cpu_s += time.thread_time() - started

    def take_cpu_s(self) -> float:
        """CPU seconds spent in clean() since the last call (benchmarks: bench/load.py)."""
        spent, self._cpu_s = self._cpu_s, 0.0
        return spent

    def _clean(self, mic_pcm16: bytes) -> bytes:
        data = self._partial + mic_pcm16
        whole = len(data) - len(data) % (BLOCK * 2)
        self._partial = data[whole:]
        if not self.settings.enabled:
            self.position += whole // 2
            return data[:whole]
        out = bytearray()
        for offset in range(0, whole, BLOCK * 2):
            pcm = data[offset : offset + BLOCK * 2]
            self.gate.observe(_samples(pcm))
            out += self._block(pcm)
        if not self.gate.settings.enabled:  # ECHO_GATE off: no second pass
            self._emitted += len(out) // 2
            if self._chunks:
                self._forget_old_reference()
            return bytes(out)
        gated = bytearray()
        for offset in range(0, len(out), BLOCK * 2):
            pcm = bytes(out[offset : offset + BLOCK * 2])
            samples = _samples(pcm)
            audible = samples @ samples >= self._audible
            gated += self.gate.gate(self._emitted // BLOCK, pcm, audible)
            self._emitted += BLOCK
        if self._chunks:
            self._forget_old_reference()
        return bytes(gated)

    def _block(self, pcm: bytes) -> bytes:
        position = self.position
        self.position += BLOCK
        mic = _samples(pcm)
        self._mic = np.concatenate((self._mic[BLOCK:], mic))
        if not self._chunks or not self._reference_near(position):
            return self._release() + self._proof_cut_short() + pcm
        self._blocks_since_search += 1
        trusted = self.state == EchoState.LOCKED and self._doubt_since is None
        every = self._track_blocks if trusted else self._search_blocks
        if self._blocks_since_search >= every:
            self._blocks_since_search = 0
            self._search()
        if self.state == EchoState.SEARCHING:
            return self._searching(pcm, mic, position)
        if self.state == EchoState.NO_ECHO:
            return pcm
        held, self._withheld = self._withheld, []  # held while searching: cancel it now
        out = bytearray()
        for at, block in [*held, (position, pcm)]:
            # A lock disproved part-way through releases the rest as it was.
            locked = self.state == EchoState.LOCKED
            out += self._cancelled(block, _samples(block), at) if locked else block
        return bytes(out)

    def _searching(self, pcm: bytes, mic: np.ndarray, position: int) -> bytes:
        """Hold the microphone from its first audible block until the echo's delay is found
        (what was held is then cancelled) or `give_up_s` is held without finding it (a
        headset: what was held is released as it is). Nothing is lost, only later."""
        if not self._withheld and mic @ mic < self._audible:
            return pcm  # too quiet to open a turn: nothing to decide
        self._withheld.append((position, pcm))
        if len(self._withheld) * BLOCK >= self.settings.give_up_s * RATE:
            self.state = EchoState.NO_ECHO
            return self._release()
        return b""

    def _release(self) -> bytes:
        held, self._withheld = self._withheld, []
        return b"".join(pcm for _, pcm in held)

    def _cancelled(self, pcm: bytes, mic: np.ndarray, position: int) -> bytes:
        """A block while locked: the residual, or silence where it is still only echo."""
        echo, residual = self._cancel(mic, position)
        echo_energy, residual_energy, mic_energy = echo @ echo, residual @ residual, mic @ mic
        self._echo_envelope = max(echo_energy, self._echo_envelope * self._tail_decay)
        self._echo_peak = max(echo_energy, self._echo_peak * self._peak_decay)
        if self._converging_blocks is not None:
            return self._proving(pcm, mic, residual)
        # Louder than our echo has lately been: a person, whatever the cancellation says.
        echo_sized = mic_energy <= 4.0 * self._echo_peak
        # Whether the prediction is in the microphone can be told only where it is a fair
        # part of what is heard; under a much louder voice the comparison is noise.
        if echo_energy > self._audible and echo_energy >= 0.25 * mic_energy:
            if residual_energy > mic_energy + 0.5 * echo_energy:
                # Subtracting made it louder, 60 ms running: the delay moved (playback
                # stalled) or the reference never played (the client dropped it).
                self._mismatches += 1
                if self._mismatches >= 3 and self._doubt_since is None:
                    self._doubt_since = position
                    self._blocks_since_search = self._track_blocks  # search now
            else:
                self._mismatches = 0
                if residual_energy < 0.5 * mic_energy:
                    self._doubt_since = None  # the echo is being cancelled: the lock holds
        else:
            self._mismatches = 0
        doubted_s = (position - self._doubt_since) / RATE if self._doubt_since is not None else None
        in_doubt = doubted_s is not None and doubted_s <= self.settings.relock_s
        if in_doubt and echo_sized and not self.gate.ready:
            # Maybe the echo at a new delay: mute while searching. No new delay found in
            # time: what is heard then is not our echo.
            return bytes(len(pcm))
        if residual_energy > mic_energy:
            return pcm
        if residual_energy < self._leak_ratio * self._echo_envelope:
            return bytes(len(pcm))  # what is left is echo the filter missed (or its reverb)
        return np.clip(np.rint(residual), -32768, 32767).astype("<i2").tobytes()

    # -- delay search ----------------------------------------------------------------------------

    def _search(self) -> None:
        """Cross-correlate the latest microphone audio with the reference over the delay range.

        While the lock is in doubt, only the last `DOUBT_WINDOW_S` count: audio from before
        a stall would find the old delay again.
        """
        window = self._window if self._doubt_since is None else self._doubt_window
        mic = self._mic[-window:]
        end = self.position  # the microphone window is [end - window, end)
        ref = self._reference(end - window - self._max_lag, end - self._min_lag)
        if not ref.any() or not mic.any():
            return
        cross = np.conj(np.fft.rfft(mic, self._nfft)) * np.fft.rfft(ref, self._nfft)
        cross = np.where(self._band, cross / (np.abs(cross) + 1e-9), 0)
        lags = self._max_lag - self._min_lag + 1
        correlation = np.abs(np.fft.irfft(cross, self._nfft)[:lags])
        peak = int(np.argmax(correlation))
        score = correlation[peak] / (correlation.mean() + 1e-12)
        if score < self.settings.lock_score:
            return
        delay = self._max_lag - peak  # mic[t] ~ ref[t - delay]
        if self.delay is not None and abs(delay - self.delay) <= self._pre:
            self._candidate = self._doubt_since = None  # the lock is right
            return
        # A new delay replaces the lock when seen twice, or once while cancelling is failing.
        failing = self._doubt_since is not None
        if self.state == EchoState.LOCKED and self._candidate != delay and not failing:
            self._candidate = delay  # a new delay must be found twice before it replaces one
            return
        self._lock(delay, mic, ref)

    def _lock(self, delay: int, mic: np.ndarray, ref: np.ndarray) -> None:
        """Start cancelling at `delay`: the filter begins as that delay times its LS gain."""
        self.delay, self._candidate, self.state = delay, None, EchoState.LOCKED
        offset = self._max_lag - delay  # ref[offset + i] lines up with mic[i]
        aligned = ref[offset : offset + mic.size]
        gain = float(mic @ aligned / (aligned @ aligned + 1e-9))
        impulse = np.zeros(2 * BLOCK)
        impulse[self._pre] = np.clip(gain, -4.0, 4.0)
        self._weights[:] = 0.0
        self._weights[0] = np.fft.rfft(impulse)
        self._power[:] = 0.0
        self._converging_blocks = 0
        self._mic_energy = self._residual_energy = 0.0
        self._proof = [0.0, 0.0]  # microphone and residual energy since the lock
        self._doubt_since = None
        self._mismatches = 0

    def _proving(self, pcm: bytes, mic: np.ndarray, residual: np.ndarray) -> bytes:
        """After a lock, hold the output until the cancellation proves the lock right.

        Right when the echo is `converged_db` down (at once for a clean path), or when
        `converge_s` has cancelled `verified_db` overall: what was held is echo and comes out
        as silence. Wrong otherwise: the peak was a word the person shares with the agent
        (found with the same synthetic voice on both sides), so what was held is released as
        it was and the guard stops holding, searching on in the background.
        """
        self._held_after_lock.append(pcm)
        mic_energy, residual_energy = mic @ mic, residual @ residual
        self._mic_energy = 0.7 * self._mic_energy + mic_energy
        self._residual_energy = 0.7 * self._residual_energy + residual_energy
        self._proof[0] += mic_energy
        self._proof[1] += residual_energy
        self._converging_blocks += 1
        if _db(self._mic_energy, self._residual_energy) >= self.settings.converged_db:
            right = True
        elif self._converging_blocks * BLOCK >= self.settings.converge_s * RATE:
            right = _db(*self._proof) >= self.settings.verified_db
        else:
            return b""
        held, self._held_after_lock = self._held_after_lock, []
        self._converging_blocks = None
        if right:
            return bytes(sum(len(p) for p in held))
        self.state, self.delay, self._candidate = EchoState.NO_ECHO, None, None
        return b"".join(held)

    def _proof_cut_short(self) -> bytes:
        """No agent audio can be heard any more while a lock is being proven (found late in
        an answer's last words, or the answer was cut short): the proof cannot finish now.
        What was held comes out as it was: the echo died away `max_delay_s` earlier, so it is
        a person or silence. The proof starts over with the next answer. Held until then, a
        person's words waited for an answer that needed them first (nothing is due, so no
        block would ever finish the proof)."""
        held, self._held_after_lock = self._held_after_lock, []
        if self._converging_blocks is not None:
            self._converging_blocks = 0
            self._proof = [0.0, 0.0]
            self._mic_energy = self._residual_energy = 0.0
        return b"".join(held)

    # -- cancellation ----------------------------------------------------------------------------

    def _cancel(self, mic: np.ndarray, position: int) -> tuple[np.ndarray, np.ndarray]:
        """One block of the partitioned overlap-save NLMS filter: (predicted echo, microphone
        minus it); adapts. Partition k models the echo path `k` blocks further on (reverb).

        The step shrinks while the residual is louder than the predicted echo (someone is
        talking over the agent), so the person's voice does not pull the filter off the echo.
        Each block constrains one partition to be causal, in turn (as Speex's MDF does): the
        others adapt in the frequency domain alone, which keeps the cost near one partition's.
        """
        parts = self._weights.shape[0]
        first = position - self.delay + self._pre  # the reference under tap 0 of partition 0
        x = self._spectra([first - (k + 1) * BLOCK for k in range(parts)])
        echo = np.fft.irfft((x * self._weights).sum(axis=0))[BLOCK:]
        residual = mic - echo
        power = (x.real**2 + x.imag**2).sum(axis=0)
        self._power = np.where(self._power > 0, 0.7 * self._power + 0.3 * power, power)
        if power.mean() > 1.0:
            step = self.settings.step * min(1.0, (echo @ echo + 1.0) / (residual @ residual + 1.0))
            error = np.fft.rfft(np.concatenate((np.zeros(BLOCK), residual)))
            norm = self._power + 1e-2 * self._power.mean() + 1.0
            self._weights += step * np.conj(x) * (error / norm)
            k = self._next_constrained = (self._next_constrained + 1) % parts
            taps = np.fft.irfft(self._weights[k])
            taps[BLOCK:] = 0.0  # causal and one block long
            self._weights[k] = np.fft.rfft(taps)
        return echo, residual

    def _spectra(self, starts: list[int]) -> np.ndarray:
        """Spectra of the 2-block reference frames starting at `starts`, one row each; a frame
        is transformed once and reused by the partitions that follow it."""
        cache = {start: self._frame_spectra.get(start) for start in starts}
        for start, spectrum in cache.items():
            if spectrum is None:
                cache[start] = np.fft.rfft(self._reference(start, start + 2 * BLOCK))
        self._frame_spectra = cache
        return np.array(list(cache.values()))
