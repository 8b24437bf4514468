"""Real-time pacing of a client's audio: a token bucket over samples.

A microphone produces audio at its sample rate and no faster; a client that sends more is
either catching up after a stall (a burst) or flooding. The bucket holds `burst_s` seconds of
samples and refills at the sample rate; it starts full, so a client's buffered pre-roll — the
official SDK sends up to about a second of audio kept from before speech started, and a browser
tab catching up after a network stall sends a few — goes through at once. Audio beyond that is
dropped, never queued (queueing it is what let one client occupy a speech recogniser for
minutes). The first dropped chunk of an episode asks the caller to warn the client with an
`error`; a client whose overflow keeps growing past `flood_s` seconds — it keeps sending faster
than real time, it is not catching up — is to be closed (close code 4009, AUDIO_FLOOD).

The overflow drains at real time too, so a client that bursts now and then over a long session
is never closed for it; only a sustained excess is.

The server's own lag is not the client's burst. When this process's event loop is held up (a
starved CPU, a slow callback), every client's audio waits in its socket and is then read at
once, and a client streaming at real time looks as if it sent seconds ahead. `LoopLag` adds up
how late the loop has been; the pacer raises its bucket's top by that time (expiring at real
time), so a stall of the server never drops a well-behaved client's audio or closes it
(measured: bench/soak.py on a machine at load average 14 held /health up for 8 s, and every
session streaming at real time got `audio_too_fast`). Likewise a session that is busy with a
frame — waiting for a final transcript from a loaded recogniser, for the store — reads nothing
meanwhile, though the loop runs on: its caller wraps each frame in `holding()`, and the time
held is credited the same way.

The burst is one per client address, not one per session (`SharedBurst`, `AddressBursts`):
sessions opened at once by one client share it, while each still earns real time on its own.

    pacer = AudioPacer(sample_rate=16000)
    pacer.share(address_bursts.open(address))   # optional
    verdict = pacer.admit(samples)   # ACCEPT, DROP_AND_WARN, DROP or FLOOD
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

ACCEPT = "accept"
DROP_AND_WARN = "drop_and_warn"  # drop this chunk and tell the client (first of an episode)
DROP = "drop"  # drop this chunk; the client was already told
FLOOD = "flood"  # the client keeps flooding: close the session (4009)

DEFAULT_BURST_S = 5.0
DEFAULT_FLOOD_S = 10.0
# The most of the server's own lag a client may catch up beyond the burst: a backlog the server
# built while starved, never a stall-sized flood (a server held up for minutes has bigger
# troubles than a dropped chunk).
MAX_LAG_CREDIT_S = 30.0
# A session's own burst when its address's burst is shared (`SharedBurst`): a network's jitter.
SESSION_SLACK_S = 1.0


class AudioPacer:
    def __init__(
        self,
        sample_rate: int,
        *,
        burst_s: float = DEFAULT_BURST_S,
        flood_s: float = DEFAULT_FLOOD_S,
        clock: Callable[[], float] = time.monotonic,
        lag: Callable[[], float] | None = None,
    ):
        if sample_rate <= 0 or burst_s <= 0 or flood_s <= 0:
            raise ValueError("sample_rate, burst_s and flood_s must be positive")
        self.sample_rate = sample_rate
        self.capacity = burst_s * sample_rate
        self.flood_samples = flood_s * sample_rate
        self.max_credit = MAX_LAG_CREDIT_S * sample_rate
        self.clock = clock
        self.lag = lag  # seconds the server's loop has been held up in total (`LoopLag`)
        self._held = 0.0  # seconds the session held its reading up, in total (`holding`)
        self._lag_seen = self._stalled()
        self._tokens = self.capacity
        self._credit = 0.0  # samples the bucket may hold beyond the burst: the server's lag
        self._clipped = 0.0  # refill the bucket's top cut off lately
        self._overflow = 0.0  # samples dropped, draining at real time
        self._dropping = False
        self._last = self._opened = clock()  # a client streams from the moment it connects
        self.received_samples = 0  # in total, admitted or not
        self.shared: SharedBurst | None = None  # its address's burst (`share`)
        self.dropped_samples = 0  # in total, for logs and tests

    def share(self, shared: SharedBurst | None) -> None:
        """Take the burst from `shared`, the burst of the client's address, shared by its
        sessions: this session keeps only `SESSION_SLACK_S` of its own (network jitter),
        besides the real time each session earns."""
        if shared is None:
            return
        self.shared = shared
        self.capacity = min(self.capacity, SESSION_SLACK_S * self.sample_rate)
        self._tokens = min(self._tokens, self.capacity)

    def admit(self, samples: int) -> str:
        """What to do with a chunk of `samples` samples arriving now."""
        now = self.clock()
        shortfall = (now - self._opened) * self.sample_rate - self.received_samples
        self.received_samples += samples
        elapsed = max(0.0, now - self._last) * self.sample_rate
        self._last = now
        self._refill(elapsed, shortfall)
        self._overflow = max(0.0, self._overflow - elapsed)
        fits = samples <= self._tokens + 1  # a sample of slack for the clock's rounding
        if not fits and self.shared is not None:  # the rest from its address's burst
            fits = self.shared.take((samples - max(0.0, self._tokens)) / self.sample_rate)
        if fits:
            self._tokens = max(0.0, self._tokens - samples)
            if self._overflow == 0:  # the episode is over once what was dropped has drained
                self._dropping = False
            return ACCEPT
        self.dropped_samples += samples
        self._overflow += samples
        if self._overflow > self.flood_samples:
            return FLOOD
        if not self._dropping:
            self._dropping = True
            return DROP_AND_WARN
        return DROP

    @contextlib.contextmanager
    def holding(self):
        """Wrap the handling of each frame: while it lasts the session reads nothing, and the
        client's audio waits in the socket. The time held (less the loop's lag meanwhile,
        already counted) is credited like the loop's lag."""
        started, lag_before = self.clock(), self._loop_lag()
        try:
            yield
        finally:
            held = self.clock() - started - (self._loop_lag() - lag_before)
            self._held += max(0.0, held)

    def _loop_lag(self) -> float:
        return self.lag() if self.lag is not None else 0.0

    def _stalled(self) -> float:
        """Seconds the server did not read this client's audio, in total: its loop held up,
        the session busy with a frame."""
        return self._loop_lag() + self._held

    def report(self) -> str:
        """The pacer's state for a log line: audio received against the time since the session
        opened, what is left of the burst, the server's lag credited."""
        rate = self.sample_rate
        wall = self.clock() - self._opened
        lag = f", server lag seen {self._loop_lag():.2f} s, session held {self._held:.2f} s"
        return (
            f"{self.received_samples / rate:.2f} s of audio in {wall:.2f} s since it opened, "
            f"burst left {self._tokens / rate:.2f} s of {self.capacity / rate:g}, "
            f"lag credit {self._credit / rate:.2f} s{lag}, overflow {self._overflow / rate:.2f} s"
        )

    def _refill(self, elapsed: float, shortfall: float) -> None:
        """Refill with the samples of `elapsed` real time, up to the burst plus the server's
        lag. The lag raises the bucket's top, it adds no samples: a client gets back the real
        time its audio waited for the server, never more (a flooder, its bucket always empty,
        gains nothing). The raise lasts while the client is behind real time — its audio in
        total short of the time since the session opened — since that is how long audio may still
        be waiting for a server that fell behind, and it never exceeds that shortfall nor
        `MAX_LAG_CREDIT_S`: whatever the credit, a client is never admitted more than real time
        plus the burst since it connected. (A raise that expired at real time left a server
        that stayed behind reading for longer than the burst — a loop starved of CPU for a
        minute on a loaded machine — dropping every client's catch-up: bench/soak.py, load 16-20,
        every session 12 s short of real time got `audio_too_fast`.) When the lag is learnt only
        after the refills it was for (the loop's tick runs after the first frames read; a busy
        loop's backlog builds over many refills), what the top cut off meanwhile is given back:
        it is kept, like the raise, while and as far as the client is short of real time."""
        self._clipped = min(self._clipped, self.max_credit, max(0.0, shortfall))
        stalled = self._stalled()
        fresh = max(0.0, stalled - self._lag_seen) * self.sample_rate
        self._lag_seen = stalled
        self._credit = min(self._credit + fresh, self.max_credit, max(0.0, shortfall))
        top = self.capacity + self._credit
        tokens = self._tokens + elapsed
        if tokens > top:
            self._clipped += min(elapsed, tokens - top)
            tokens = top
        restored = min(fresh, self._clipped)
        self._clipped -= restored
        self._tokens = tokens + restored


class SharedBurst:
    """The burst allowance of one client address, shared by its sessions on this node.

    Each session earns real time on its own pacer (so N people behind one NAT address, each
    talking at real time, are never refused), but audio *ahead* of real time is drawn from
    this one bucket of `seconds`, refilled at real time once for the address, not once per
    session: a flooder opening N sessions at once gets one burst, not N. The trade-off: people
    sharing an address who all catch up at the same moment (their common network stalled)
    share one burst too, and the excess is dropped (`audio_too_fast`); raise
    `AUDIO_ADDRESS_BURST_SECONDS` or set it to 0 (each session its own burst) for such a site.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.capacity = seconds
        self.clock = clock
        self._tokens = seconds
        self._last = clock()
        self.sessions = 0  # open sessions drawing on it (`AddressBursts`)

    def take(self, seconds: float) -> bool:
        """Draw `seconds` of audio ahead of real time; False (nothing drawn) if there is not
        that much left."""
        self._refill()
        if seconds > self._tokens + 1e-6:
            return False
        self._tokens = max(0.0, self._tokens - seconds)
        return True

    def full(self) -> bool:
        self._refill()
        return self._tokens >= self.capacity

    def _refill(self) -> None:
        now = self.clock()
        self._tokens = min(self.capacity, self._tokens + max(0.0, now - self._last))
        self._last = now


class AddressBursts:
    """One `SharedBurst` per client address (keyed like `limits.FloodPenalty`), on this node.

    An address's burst outlives its sessions until it has refilled, so closing a session and
    opening another gives no fresh burst. Bounded: at most `max_addresses`; past it, addresses
    with no session and a full burst are forgotten (they lose nothing), then — only if the
    node holds that many sessions — none are created (each session its own burst).
    """

    def __init__(self, seconds: float, *, max_addresses: int = 100_000,
                 clock: Callable[[], float] = time.monotonic):  # fmt: skip
        self.seconds = seconds
        self.max_addresses = max_addresses
        self.clock = clock
        self._bursts: dict[str, SharedBurst] = {}

    def open(self, address: str) -> SharedBurst | None:
        """The burst a new session from `address` draws on; None: sharing is off."""
        if self.seconds <= 0 or not address:
            return None
        burst = self._bursts.get(address)
        if burst is None:
            if len(self._bursts) >= self.max_addresses:
                self._forget_idle()
                if len(self._bursts) >= self.max_addresses:
                    return None
            burst = self._bursts[address] = SharedBurst(self.seconds, self.clock)
        burst.sessions += 1
        return burst

    def release(self, address: str) -> None:
        burst = self._bursts.get(address)
        if burst is not None:
            burst.sessions = max(0, burst.sessions - 1)
            if burst.sessions == 0 and burst.full():
                del self._bursts[address]

    def _forget_idle(self) -> None:
        for address in [a for a, b in self._bursts.items() if b.sessions == 0 and b.full()]:
            del self._bursts[address]

    def __len__(self) -> int:
        return len(self._bursts)


class LoopLag:
    """How long this process's event loop has been held up, in total (seconds).

    A tick every `interval_s`; each time it wakes more than `slack_s` late, the lateness is
    added. Run it as one task per process (`run`); read it with `stalled_s` or by calling it.

    Only a hold-up counts (the process descheduled, a blocking call), not a loop that is merely
    busy: a busy loop wakes each tick late by the callbacks queued before it, tens of
    milliseconds, and holds no client's audio up for longer than that, since each session takes
    every frame that has arrived in each turn of the loop (websocket.py, `_Reader`; when it took
    a frame per three turns, a loop busy with 50 sessions built seconds of backlog in each with
    no tick 250 ms late: bench/soak.py). Crediting every tick's lateness would not let a flooder
    excuse itself (the credit is bounded by the client's shortfall from real time), but it
    would credit any client behind real time on a server that is merely busy, and pay it out
    as a burst larger than `AUDIO_BURST_SECONDS`.
    """

    def __init__(self, interval_s: float = 0.05, slack_s: float = 0.25,
                 clock: Callable[[], float] = time.monotonic):  # fmt: skip
        self.interval_s = interval_s
        self.slack_s = slack_s
        self.clock = clock
        self.stalled_s = 0.0

    def __call__(self) -> float:
        return self.stalled_s

    async def run(self) -> None:
        while True:
            due = self.clock() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self.woke(late=self.clock() - due)

    def woke(self, late: float) -> None:
        """A tick woke `late` seconds after it was due."""
        if late > self.slack_s:
            self.stalled_s += late
