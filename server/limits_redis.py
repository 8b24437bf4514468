"""The authorize rate limit counted in Redis (`REDIS_URL`): one budget per caller for the whole
cluster, whichever node a balancer sends each request to.

Same fixed one-minute window as `limits.RateLimiter`, kept by Redis: one Lua script counts the
hit and starts the window's TTL on its first hit, atomically, so nodes counting at the same
instant never lose a hit. A window's key expires with it (nothing to sweep), and holds only a
counter under the SHA-256 of the caller's address. Redis unreachable raises `StoreUnavailable`
(authorize answers 503, as it would for the key it could not issue).
"""

from __future__ import annotations

import hashlib
import math

import redis.asyncio as redis
from redis.exceptions import RedisError

from .limits import WINDOW_S
from .pipeline.stores import StoreUnavailable

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

    async def hit(self, key: str) -> float | None:
        """None when allowed; else the seconds until the key may try again."""
        entry = NAMESPACE + hashlib.sha256(key.encode()).hexdigest()
        try:
            hits, left_ms = await self._hit(keys=[entry], args=[int(WINDOW_S * 1000)])
        except RedisError as error:
            raise StoreUnavailable(
                "rate limit", "the rate limit (Redis) cannot be reached"
            ) from error
        if hits <= self.per_minute:
            return None
        return max(1.0, math.ceil(max(0, left_ms) / 1000))
