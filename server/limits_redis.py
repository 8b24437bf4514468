"""The authorize rate limit counted in Redis (`REDIS_URL`): one budget per caller for the whole
cluster, whichever node a balancer sends each request to.

Same fixed one-minute window as `limits.RateLimiter`, kept by Redis: one Lua script counts the
hit and starts the window's TTL on its first hit, atomically, so nodes counting at the same
instant never lose a hit. A window's key expires with it (nothing to sweep), and holds only a
counter under the SHA-256 of the caller's address. While Redis cannot be reached the node
counts on its own (`RateLimiter`) and logs it: a rate limit must not turn a Redis outage into
refusals of calls that need no Redis (a deletion), and authorize answers 503 anyway for the
key it cannot issue.
"""

from __future__ import annotations

import hashlib
import logging
import math

import redis.asyncio as redis
from redis.exceptions import RedisError

from .limits import WINDOW_S, RateLimiter

log = logging.getLogger("server.limits")

NAMESPACE = "lc:rate:"

# KEYS[1]: the caller's window. ARGV[1]: its length, ms. Returns {hits, ms left in the window}.
HIT = """
local hits = redis.call('INCR', KEYS[1])
if hits == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {hits, redis.call('PTTL', KEYS[1])}
"""


class RedisRateLimiter:
    def __init__(self, client: redis.Redis, per_minute: int):
        self.per_minute = per_minute
        self._hit = client.register_script(HIT)
        self.fallback = RateLimiter(per_minute)  # while Redis cannot be reached

    async def hit(self, key: str) -> float | None:
        """None when allowed; else the seconds until the key may try again."""
        entry = NAMESPACE + hashlib.sha256(key.encode()).hexdigest()
        try:
            hits, left_ms = await self._hit(keys=[entry], args=[int(WINDOW_S * 1000)])
        except RedisError as error:
            log.warning("rate limit counted on this node only: Redis failed (%s)", error)
            return await self.fallback.hit(key)
        if hits <= self.per_minute:
            return None
        return max(1.0, math.ceil(max(0, left_ms) / 1000))
