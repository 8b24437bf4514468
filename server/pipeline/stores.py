"""The two shared stores a pipeline node needs, their contracts, and the choice between them.

A node keeps two kinds of state that must outlive it or be seen by its peers:

- **session keys** (`KeyStore`): issued by `/api/authorize`, redeemed once by the WebSocket.
  In memory by default (one node); in Redis with `REDIS_URL`, so a key issued by any node is
  redeemed on any other, exactly once.
- **conversation history** (`HistoryStore`): the turns an agent sees on every `message`.
  SQLite under `DATA_DIR` by default; PostgreSQL with `DATABASE_URL`, so every node reads the
  same conversations.

Each backend answers the same small async interface, so the pipeline never knows which one
runs (docs/scaling.md). A backend that cannot be reached raises `StoreUnavailable`: the
authorize endpoint answers 503 with a JSON reason, `/health` tells the balancer, and the next
call tries again — nothing is cached as broken.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..config import Settings
    from .keys import SessionGrant
    from .store import DataRecord, Turn

log = logging.getLogger("server.pipeline.stores")

HEALTH_CHECK_TIMEOUT_S = 2.0


class StoreUnavailable(Exception):
    """A store could not be reached or failed. `message` is safe to show a client; the cause
    (chained) carries the details for the log."""

    def __init__(self, store: str, message: str):
        super().__init__(f"{store}: {message}")
        self.store = store
        self.message = message


class UnknownSession(LookupError):
    """A turn was appended to a session the history store does not have."""


class KeyStore(Protocol):
    """Single-use, short-lived client session keys."""

    backend: str  # "memory", "redis"

    async def issue(self, grant: SessionGrant) -> str:
        """A new unguessable key that redeems `grant` once, within the store's TTL."""
        ...

    async def redeem(self, key: str | None) -> SessionGrant:
        """The key's grant, consuming the key atomically; `KeyRefused` if it cannot be used."""
        ...

    async def outstanding(self) -> int:
        """Keys this node issued that are not yet used: sessions about to connect to it."""
        ...

    async def ping(self) -> None:
        """Return if the store answers; raise `StoreUnavailable` otherwise."""
        ...

    async def close(self) -> None: ...


class HistoryStore(Protocol):
    """Conversations: sessions and their turns, in order, each one's resume-token digest, and
    the `response.data` messages sent in it, numbered, so a resumed client gets what it missed.

    Retention is bounded both ways on every backend: a conversation keeps its last `max_turns`
    turns and its last `max_turns` data messages (older ones go as new ones are appended), and
    conversations untouched for `max_age_s` are deleted by `prune()` (at open, then at most
    hourly as sessions are created).
    """

    backend: str  # "sqlite", "postgresql"
    max_turns: int  # turns (and data messages) a conversation keeps: `HISTORY_MAX_TURNS`

    async def create(
        self, pipeline_id: str, metadata: dict, session_id: str | None = None
    ) -> str: ...

    async def exists(self, session_id: str) -> bool: ...

    async def append(
        self,
        session_id: str,
        role: str,
        text: str,
        turn_id: str | None = None,
        *,
        interrupted: bool = False,  # an assistant turn cut short: `text` is what was heard
    ) -> None: ...

    async def record(
        self, session_id: str, role: str, text: str, turn_id: str, *, interrupted: bool
    ) -> None:
        """The turn `turn_id` of `role` now holds `text`: replaced in place (keeping its place
        in the conversation) if stored, appended if not, removed if `text` is empty. How an
        answer being played is kept as far as it was heard, then as finally heard."""
        ...

    async def history(self, session_id: str, limit: int = 50) -> list[Turn]:
        """The last `limit` turns, oldest first."""
        ...

    async def delete(self, session_id: str) -> bool:
        """Forget the session, its turns and its resume token; False if there was none."""
        ...

    async def prune(self, now: float | None = None) -> int:
        """Delete conversations untouched for `max_age_s` (before `now`, a Unix time); how many."""
        ...

    async def save_resume_digest(self, session_id: str, digest: str) -> None:
        """Keep the digest of the session's latest resume token (keys.py), replacing the last."""
        ...

    async def resume_digest(self, session_id: str) -> str | None: ...

    async def append_data(self, session_id: str, content: Any, turn_id: str | None) -> int:
        """Keep a `response.data` about to be sent; its `seq`: 1, 2, … in its conversation,
        whichever node numbers it (`UnknownSession` for a conversation the store lacks)."""
        ...

    async def data_since(self, session_id: str, after_seq: int) -> list[DataRecord]:
        """The kept data messages numbered after `after_seq`, oldest first."""
        ...

    async def last_data_seq(self, session_id: str) -> int:
        """The conversation's last `seq` (0 before its first data message)."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class Stores:
    """The node's key store and history store, opened and closed together."""

    def __init__(self, keys: KeyStore, history: HistoryStore):
        self.keys = keys
        self.history = history

    def describe(self) -> dict[str, str]:
        """Which backend holds what, for `/health` (never a URL: it may carry a password)."""
        return {"session_keys": self.keys.backend, "history": self.history.backend}

    async def check(self, timeout_s: float = HEALTH_CHECK_TIMEOUT_S) -> None:
        """Raise `StoreUnavailable` unless both stores answer within `timeout_s`."""
        for name, store in (("session keys", self.keys), ("history", self.history)):
            try:
                async with asyncio.timeout(timeout_s):
                    await store.ping()
            except TimeoutError:
                raise StoreUnavailable(name, f"did not answer within {timeout_s:g} s") from None

    async def close(self) -> None:
        await asyncio.gather(self.keys.close(), self.history.close(), return_exceptions=True)


async def open_stores(settings: Settings) -> Stores:
    """The stores the settings ask for, reachable and migrated; `StoreUnavailable` if not.
    Backends are imported here, not at the top: they import this module's errors, and Redis's
    and PostgreSQL's drivers load only on nodes configured for them."""
    from .keys import SessionKeys
    from .store import SessionStore

    retention = {
        "max_turns": settings.history_max_turns,
        "max_age_s": settings.history_max_days * 86400,
    }
    if settings.redis_url:
        from .keys_redis import RedisKeys

        keys: KeyStore = await RedisKeys.open(settings.redis_url)
    else:
        keys = SessionKeys()
    try:
        if settings.database_url:
            from .store_postgres import PostgresStore

            history: HistoryStore = await PostgresStore.open(
                settings.database_url, pool_size=settings.database_pool_size, **retention
            )
        else:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            history = SessionStore(settings.data_dir / "sessions.sqlite3", **retention)
    except BaseException:
        await keys.close()
        raise
    return Stores(keys, history)
