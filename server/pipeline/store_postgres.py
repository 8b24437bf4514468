"""Conversation history in PostgreSQL (`DATABASE_URL`): one history for every node.

asyncpg with a connection pool (`DATABASE_POOL_SIZE` connections per node): a call waits for a
free connection, never opens one of its own. The schema is created or migrated when the node
opens the store: `MIGRATIONS` are applied in order inside one transaction that holds an
advisory lock, and `schema_version` records the last one applied — nodes starting together
migrate once, and a node started on an up-to-date database changes nothing.

Turns are ordered by a database sequence (`turns.id`), so two nodes appending to the same
conversation cannot collide on a position; the order is the order of the appends.

Retention matches SQLite's (stores.HistoryStore): an append trims its conversation to the last
`max_turns` turns in the same transaction, and conversations untouched for `max_age_s` are
deleted at open and then at most hourly per node as sessions are created — a plain DELETE, so
nodes pruning at once only repeat each other's work. The resume-token digest is a column of the
session's row (migration 2), so any node can check a token and deleting a conversation
forgets it.

A connection the server dropped (PostgreSQL restarted, a failover) fails the one call that
finds it, which is retried once on a fresh connection; while the server is down every call
raises `StoreUnavailable` quickly, and the pool reconnects by itself when it returns.

Closing is bounded: asyncpg's graceful close waits for every connection to come back to the
pool, and one whose checkout or command was cancelled while PostgreSQL was away (a health check
cut short by its timeout) may never come back. After `CLOSE_TIMEOUT_S` the pool's connections
are dropped instead, so a node that lived through an outage still shuts down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from .store import PRUNE_EVERY_S, DataRecord, SessionStore, Turn
from .stores import StoreUnavailable, UnknownSession

T = TypeVar("T")
log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 2.0
COMMAND_TIMEOUT_S = 5.0
CLOSE_TIMEOUT_S = 5.0
MIGRATION_LOCK = 0x6C63_7379  # any constant shared by every node: "lcsy"

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            pipeline_id TEXT NOT NULL,
            metadata JSONB NOT NULL DEFAULT '{}',
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE TABLE turns (
            id BIGSERIAL PRIMARY KEY,
            session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
            text TEXT NOT NULL,
            turn_id TEXT,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE INDEX turns_by_session ON turns (session_id, id);
        """,
    ),
    (
        2,
        """
        ALTER TABLE sessions ADD COLUMN resume_digest TEXT;
        CREATE INDEX sessions_by_update ON sessions (updated_at);
        """,
    ),
    (
        3,
        # An assistant turn the user cut short: its text is what was heard (docs/protocol.md).
        "ALTER TABLE turns ADD COLUMN interrupted BOOLEAN NOT NULL DEFAULT false;",
    ),
    (
        4,
        # response.data sent in a conversation, numbered per conversation, replayed to a
        # resumed client (docs/protocol.md, "Reconnecting"). TEXT, not JSONB: sent again
        # exactly as it was sent (JSONB would reorder an object's keys).
        """
        CREATE TABLE data_messages (
            session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            seq BIGINT NOT NULL,
            content TEXT NOT NULL,
            turn_id TEXT,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (session_id, seq)
        );
        """,
    ),
]

# The server went away or the pool could not reach it: worth a 503 and a later retry.
_UNREACHABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)
# The connection died under a call that the server therefore never completed.
_STALE = (asyncpg.ConnectionDoesNotExistError, asyncpg.AdminShutdownError, ConnectionError)


async def migrate(connection: asyncpg.Connection) -> int:
    """Bring the schema to the latest version; the version it is at afterwards."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        current = await connection.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        for version, sql in MIGRATIONS:
            if version > current:
                await connection.execute(sql)
                await connection.execute(
                    "INSERT INTO schema_version (version) VALUES ($1)", version
                )
                current = version
        return current


class PostgresStore:
    backend = "postgresql"

    def __init__(
        self, pool: asyncpg.Pool, *, max_turns: int = 200, max_age_s: float = 30 * 86400.0
    ):
        self.pool = pool
        self.max_turns = max_turns
        self.max_age_s = max_age_s
        self._pruned_at = 0.0

    @classmethod
    async def open(
        cls,
        url: str,
        pool_size: int = 10,
        *,
        max_turns: int = 200,
        max_age_s: float = 30 * 86400.0,
    ) -> PostgresStore:
        """Connect, migrate, and return the store; `StoreUnavailable` if PostgreSQL is not there."""
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=pool_size,
                timeout=CONNECT_TIMEOUT_S,
                command_timeout=COMMAND_TIMEOUT_S,
            )
        except _UNREACHABLE as error:
            raise _unavailable() from error
        store = cls(pool, max_turns=max_turns, max_age_s=max_age_s)
        try:
            await store._call(migrate)
            await store.prune()
        except BaseException:
            await _close(pool)
            raise
        return store

    async def _call(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """`work(connection)` on a pooled connection; once more if the first one was stale."""
        for attempt in (1, 2):
            try:
                async with self.pool.acquire(timeout=CONNECT_TIMEOUT_S) as connection:
                    return await work(connection)
            except _STALE as error:
                if attempt == 2:
                    raise _unavailable() from error
            except _UNREACHABLE as error:
                raise _unavailable() from error
        raise AssertionError("unreachable")

    async def create(self, pipeline_id: str, metadata: dict, session_id: str | None = None) -> str:
        session_id = session_id or SessionStore.new_session_id()
        if time.time() - self._pruned_at >= PRUNE_EVERY_S:
            await self.prune()
        await self._call(
            lambda c: c.execute(
                "INSERT INTO sessions (id, pipeline_id, metadata) VALUES ($1, $2, $3::jsonb)",
                session_id,
                pipeline_id,
                json.dumps(metadata),
            )
        )
        return session_id

    async def exists(self, session_id: str) -> bool:
        found = await self._call(
            lambda c: c.fetchval("SELECT 1 FROM sessions WHERE id = $1", session_id)
        )
        return found is not None

    async def append(
        self,
        session_id: str,
        role: str,
        text: str,
        turn_id: str | None = None,
        *,
        interrupted: bool = False,
    ) -> None:
        async def insert(connection: asyncpg.Connection) -> None:
            async with connection.transaction():
                await connection.execute(
                    "INSERT INTO turns (session_id, role, text, turn_id, interrupted)"
                    " VALUES ($1, $2, $3, $4, $5)",
                    session_id,
                    role,
                    text,
                    turn_id,
                    interrupted,
                )
                await connection.execute(
                    "UPDATE sessions SET updated_at = now() WHERE id = $1", session_id
                )
                await connection.execute(
                    "DELETE FROM turns WHERE session_id = $1 AND id <= ("
                    " SELECT id FROM turns WHERE session_id = $1"
                    " ORDER BY id DESC OFFSET $2 LIMIT 1)",
                    session_id,
                    self.max_turns,
                )

        try:
            await self._call(insert)
        except asyncpg.ForeignKeyViolationError:
            raise UnknownSession(session_id) from None

    async def record(
        self, session_id: str, role: str, text: str, turn_id: str, *, interrupted: bool
    ) -> None:
        """Replace the turn in place, append it, or remove it when `text` is empty."""
        where = " WHERE session_id = $1 AND turn_id = $2 AND role = $3"
        if not text:
            await self._call(
                lambda c: c.execute("DELETE FROM turns" + where, session_id, turn_id, role)
            )
            return
        status = await self._call(
            lambda c: c.execute(
                "UPDATE turns SET text = $4, interrupted = $5" + where,
                session_id, turn_id, role, text, interrupted,
            )
        )  # fmt: skip
        if status == "UPDATE 0":
            await self.append(session_id, role, text, turn_id, interrupted=interrupted)

    async def history(self, session_id: str, limit: int = 50) -> list[Turn]:
        rows = await self._call(
            lambda c: c.fetch(
                "SELECT role, text, turn_id, interrupted FROM turns WHERE session_id = $1"
                " ORDER BY id DESC LIMIT $2",
                session_id,
                limit,
            )
        )
        return [Turn(r["role"], r["text"], r["turn_id"], r["interrupted"]) for r in reversed(rows)]

    async def delete(self, session_id: str) -> bool:
        status = await self._call(
            lambda c: c.execute("DELETE FROM sessions WHERE id = $1", session_id)
        )
        return status != "DELETE 0"

    async def prune(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        self._pruned_at = now
        status = await self._call(
            lambda c: c.execute(
                "DELETE FROM sessions WHERE updated_at < to_timestamp($1)", now - self.max_age_s
            )
        )
        return int(status.split()[-1])

    async def save_resume_digest(self, session_id: str, digest: str) -> None:
        await self._call(
            lambda c: c.execute(
                "UPDATE sessions SET resume_digest = $2 WHERE id = $1", session_id, digest
            )
        )

    async def resume_digest(self, session_id: str) -> str | None:
        return await self._call(
            lambda c: c.fetchval("SELECT resume_digest FROM sessions WHERE id = $1", session_id)
        )

    async def append_data(self, session_id: str, content: Any, turn_id: str | None) -> int:
        async def insert(connection: asyncpg.Connection) -> int:
            async with connection.transaction():
                # The session's row locked: two nodes numbering one conversation take turns.
                found = await connection.fetchval(
                    "SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE", session_id
                )
                if found is None:
                    raise UnknownSession(session_id)
                seq = await connection.fetchval(
                    "INSERT INTO data_messages (session_id, seq, content, turn_id)"
                    " SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3 FROM data_messages"
                    " WHERE session_id = $1 RETURNING seq",
                    session_id,
                    json.dumps(content),
                    turn_id,
                )
                await connection.execute(
                    "DELETE FROM data_messages WHERE session_id = $1 AND seq <= $2",
                    session_id,
                    seq - self.max_turns,
                )
                return seq

        return await self._call(insert)

    async def data_since(self, session_id: str, after_seq: int) -> list[DataRecord]:
        rows = await self._call(
            lambda c: c.fetch(
                "SELECT seq, content, turn_id FROM data_messages"
                " WHERE session_id = $1 AND seq > $2 ORDER BY seq",
                session_id,
                after_seq,
            )
        )
        return [DataRecord(r["seq"], json.loads(r["content"]), r["turn_id"]) for r in rows]

    async def last_data_seq(self, session_id: str) -> int:
        return await self._call(
            lambda c: c.fetchval(
                "SELECT COALESCE(MAX(seq), 0) FROM data_messages WHERE session_id = $1",
                session_id,
            )
        )

    async def ping(self) -> None:
        await self._call(lambda c: c.fetchval("SELECT 1"))

    async def close(self) -> None:
        await _close(self.pool)


async def _close(pool: asyncpg.Pool) -> None:
    """Close gracefully, or drop the connections if that takes over `CLOSE_TIMEOUT_S`: a
    cancelled `Pool.close()` terminates the pool (asyncpg's own advice is this `wait_for`)."""
    try:
        await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT_S)
    except TimeoutError:
        log.warning(
            "the history database's connections did not all come back within %g s: dropped",
            CLOSE_TIMEOUT_S,
        )


def _unavailable() -> StoreUnavailable:
    return StoreUnavailable("history", "the history database (PostgreSQL) cannot be reached")
