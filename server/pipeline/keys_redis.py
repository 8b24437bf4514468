"""Session keys in Redis (`REDIS_URL`): issued on one node, redeemed once on any node.

Each key is stored under the SHA-256 of its text (a dump of Redis reveals no usable key), as
the grant's JSON, with a Redis TTL of `ttl_s`: expiry costs no sweeping. Redeeming runs one
Lua script, so two nodes presenting the same key at the same instant cannot both win: the
script reads the grant and overwrites it with a "used" marker that keeps the remaining TTL, so
a replay is refused as "already used" (not "unknown") until the key would have expired, as the
in-memory store does.

`outstanding()` (keys about to connect, which take a place under `MAX_SESSIONS` like live
sockets do) counts the keys this node issued that Redis still holds unused: the node remembers
what it issued until the TTL ends and asks Redis about those in one MGET, so a key redeemed on
another node stops counting here at once. What the node remembers is bounded: authorize checks
`outstanding()` against `MAX_SESSIONS` before it issues, and a key leaves the memory when used
or expired.

Timeouts are short and retries few: a node whose Redis is gone answers 503 within about a
second, and the next call reconnects by itself.
"""

from __future__ import annotations

import hashlib
import json
import time

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from .keys import SessionGrant, key_refused, new_key
from .stores import StoreUnavailable

NAMESPACE = "lc:sk:"
USED = "used"
SOCKET_TIMEOUT_S = 1.0

# KEYS[1]: the key's entry. ARGV[1]: the "used" marker. Returns the grant's JSON, the marker
# (already used), or nil (unknown or expired).
REDEEM = """
local grant = redis.call('GET', KEYS[1])
if not grant then return false end
if grant ~= ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL') end
return grant
"""


def _entry(key: str) -> str:
    return NAMESPACE + hashlib.sha256(key.encode()).hexdigest()


class RedisKeys:
    backend = "redis"

    def __init__(self, client: redis.Redis, ttl_s: float = 60.0):
        self.client = client
        self.ttl_ms = int(ttl_s * 1000)
        self._redeem = client.register_script(REDEEM)
        self._issued: dict[str, float] = {}  # entry -> monotonic expiry, for outstanding()

    @classmethod
    async def open(cls, url: str, ttl_s: float = 60.0) -> RedisKeys:
        """Connect and check that Redis answers; `StoreUnavailable` if it does not."""
        client = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=SOCKET_TIMEOUT_S,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=2),
            health_check_interval=30,
        )
        keys = cls(client, ttl_s)
        try:
            await keys.ping()
        except BaseException:
            await client.aclose()
            raise
        return keys

    async def issue(self, grant: SessionGrant) -> str:
        key = new_key()
        try:
            await self.client.set(_entry(key), json.dumps(grant.to_json()), px=self.ttl_ms, nx=True)
        except RedisError as error:
            raise _unavailable() from error
        self._issued[_entry(key)] = time.monotonic() + self.ttl_ms / 1000
        return key

    async def redeem(self, key: str | None) -> SessionGrant:
        if not key:
            raise key_refused(key, used=False)
        try:
            found = await self._redeem(keys=[_entry(key)], args=[USED])
        except RedisError as error:
            raise _unavailable() from error
        if found is None or found == USED:
            raise key_refused(key, used=found == USED)
        return SessionGrant.from_json(json.loads(found))

    async def outstanding(self) -> int:
        """Keys this node issued that no node has used yet and that have not expired."""
        now = time.monotonic()
        self._issued = {e: t for e, t in self._issued.items() if t > now}
        if not self._issued:
            return 0
        entries = list(self._issued)
        try:
            values = await self.client.mget(entries)
        except RedisError as error:
            raise _unavailable() from error
        for entry, value in zip(entries, values, strict=True):
            if value is None or value == USED:
                # another authorize counting at the same time may have forgotten it already
                self._issued.pop(entry, None)
        return len(self._issued)

    async def ping(self) -> None:
        try:
            await self.client.ping()
        except RedisError as error:
            raise _unavailable() from error

    async def close(self) -> None:
        await self.client.aclose()


def _unavailable() -> StoreUnavailable:
    return StoreUnavailable("session keys", "the key store (Redis) cannot be reached")
