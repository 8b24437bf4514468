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
        if len(self._windows) > MAX_TRACKED_ADDRESSES:
            self._forget_old(now)
        return None

    def _forget_old(self, now: float) -> None:
        for key in [k for k, (s, _) in self._windows.items() if now - s >= WINDOW_S]:
            del self._windows[key]
        while len(self._windows) > MAX_TRACKED_ADDRESSES:
            del self._windows[next(iter(self._windows))]
