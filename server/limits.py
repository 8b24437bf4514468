"""Per-client request limits: who the client is, and how many authorizes it may ask for.

The client's address is the TCP peer's, unless that peer is a configured trusted proxy
(`TRUSTED_PROXIES`): then it is the right-most `X-Forwarded-For` entry that is not itself a
trusted proxy. A forwarded-for header from anyone else is ignored — otherwise every caller could
name a fresh address per request and never be limited.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from starlette.requests import HTTPConnection

WINDOW_S = 60.0
# At most this many addresses are remembered; past it the oldest windows are forgotten first
# (a flood of spoofed peers costs memory once, never without bound).
MAX_TRACKED_ADDRESSES = 100_000


def client_address(connection: HTTPConnection, trusted_proxies: tuple[str, ...]) -> str:
    peer = connection.client.host if connection.client else ""
    if peer not in trusted_proxies:
        return peer
    forwarded = connection.headers.get("x-forwarded-for", "")
    hops = [hop.strip().lower() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if hop not in trusted_proxies:
            return hop
    return peer


class RateLimiter:
    """At most `per_minute` hits per key in each fixed one-minute window, on this node.
    With several nodes on one Redis, `RedisRateLimiter` (limits_redis.py) counts for all."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.per_minute = per_minute
        self.clock = clock
        self._windows: dict[str, tuple[float, int]] = {}  # key → (window start, hits)

    async def hit(self, key: str) -> float | None:
        """None when allowed; else the seconds until the key may try again."""
        now = self.clock()
        start, hits = self._windows.get(key, (now, 0))
        if now - start >= WINDOW_S:
            start, hits = now, 0
        if hits >= self.per_minute:
            return max(1.0, math.ceil(start + WINDOW_S - now))
        self._windows.pop(key, None)  # re-insert: dict order is oldest window first
        self._windows[key] = (start, hits + 1)
        keep_bounded(self._windows, lambda window: now - window[0] >= WINDOW_S)
        return None


class FloodPenalty:
    """Addresses refused for `seconds` after one of their sessions was closed for flooding
    audio (4009).

    Each new session had a full burst allowance (and a welcome to synthesise): a client that
    reconnects each time it is closed had a fresh burst decoded every time, at the authorize
    rate limit. (Sessions open at the same time from one address share one burst:
    `AUDIO_ADDRESS_BURST_SECONDS`, pipeline/pacing.py `AddressBursts`.) So a flood close bars
    the address that asked for the session's key: authorize answers 429 `audio_flood`, and a
    key it got before is refused at the WebSocket with 4009. Per node, like `MAX_SESSIONS`.
    Measured (bench/stt_flood.py, the flooder in a process of its own, quiet 2-core machine):
    another session's final transcript 1.04x its time alone, against 1.22x without it.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self.clock = clock
        self._until: dict[str, float] = {}  # address → when its penalty ends, oldest first

    def penalise(self, address: str) -> None:
        if self.seconds <= 0 or not address:
            return
        now = self.clock()
        self._until.pop(address, None)
        self._until[address] = now + self.seconds
        keep_bounded(self._until, lambda until: until <= now)

    def remaining(self, address: str) -> float | None:
        """Whole seconds until `address` may connect again; None if it may now."""
        until = self._until.get(address)
        if until is None:
            return None
        left = until - self.clock()
        if left <= 0:
            del self._until[address]
            return None
        return float(max(1, math.ceil(left)))


def keep_bounded(table: dict, expired: Callable[[object], bool]) -> None:
    """Past `MAX_TRACKED_ADDRESSES` entries, forget those `expired` picks by value, then the
    oldest (`table` is kept in insertion order, oldest first)."""
    if len(table) <= MAX_TRACKED_ADDRESSES:
        return
    for key in [k for k, value in table.items() if expired(value)]:
        del table[key]
    while len(table) > MAX_TRACKED_ADDRESSES:
        del table[next(iter(table))]
