"""Session history in SQLite, so a resumed session continues — across server restarts too.

One file under DATA_DIR, two tables: sessions and their turns (who said what, in order).
Writes happen once per turn, never on the audio path; WAL mode keeps each one well under a
millisecond — but a disk that stalls (fsync on a busy machine) must not stall every session's
audio, so each call runs on the store's one database thread and the event loop only awaits it.
One thread also serialises access to the connection: no lock is needed.

Retention is bounded both ways: each conversation keeps its last `max_turns` turns (older ones
are pruned as new ones are appended), and conversations untouched for `max_age_s` are deleted
(checked at open and then at most once an hour, as sessions are created). Sessions also keep
the digest of their latest resume token (keys.py), so ownership lives and dies with the history.

Two servers may open one file at once (two processes on one DATA_DIR): the schema is created
or upgraded in one write transaction, so the second waits and finds it done, and the lock
conflicts SQLite reports at once rather than after its busy timeout are retried.

`SessionStore` is the single-node default; `store_postgres.PostgresStore` serves many nodes.
Both answer `stores.HistoryStore`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .stores import StoreUnavailable, UnknownSession

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    pipeline_id TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    text TEXT NOT NULL,
    turn_id TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE TABLE IF NOT EXISTS data_messages (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    content TEXT NOT NULL,
    turn_id TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (session_id, seq)
);
"""
# Added after the first release: an assistant turn the user cut short (its text is what was heard).
MIGRATIONS = ["ALTER TABLE turns ADD COLUMN interrupted INTEGER NOT NULL DEFAULT 0"]

SESSION_PREFIX = "sess_"
PRUNE_EVERY_S = 3600.0
OPEN_WAIT_S = 10.0  # another process opening the same file at once: how long to wait for it


@dataclass(frozen=True)
class Turn:
    role: str
    text: str
    turn_id: str | None = None
    interrupted: bool = False

    def to_dict(self) -> dict:
        """As the agent's `history` gets it; `interrupted` only when true (docs/protocol.md)."""
        entry = {"role": self.role, "text": self.text}
        if self.interrupted:
            entry["interrupted"] = True
        return entry


@dataclass(frozen=True)
class DataRecord:
    """A `response.data` kept for resumed clients: its number, content (as sent) and turn."""

    seq: int
    content: Any
    turn_id: str | None = None


class SessionStore:
    backend = "sqlite"

    def __init__(self, path: Path, *, max_turns: int = 200, max_age_s: float = 30 * 86400.0):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_turns = max_turns
        self.max_age_s = max_age_s
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite")
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        _while_locked(lambda: self._db.execute("PRAGMA journal_mode=WAL"))
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        _while_locked(self._migrate)
        self._pruned_at = 0.0
        self._prune(time.time())  # at open, before the database thread has work

    def _migrate(self) -> None:
        """Create or bring up to date the tables, in one write transaction: another process
        opening the same file at the same moment waits, then finds the work done."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(turns)")}
            if "interrupted" not in columns:  # a file from before interrupted turns were marked
                for statement in MIGRATIONS:
                    self._db.execute(statement)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(sessions)")}
            if "resume_digest" not in columns:  # a file from before resume tokens
                self._db.execute("ALTER TABLE sessions ADD COLUMN resume_digest TEXT")
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # SQLite ends some failed transactions itself
                self._db.execute("ROLLBACK")
            raise

    @staticmethod
    def new_session_id() -> str:
        return SESSION_PREFIX + secrets.token_hex(12)

    async def _run(self, call: Callable[..., T], *args) -> T:
        """`call(*args)` on the database thread."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._thread, functools.partial(call, *args))
        except sqlite3.OperationalError as error:  # disk full, file locked, I/O error
            raise StoreUnavailable("history", "the history database (SQLite) failed") from error

    async def create(self, pipeline_id: str, metadata: dict, session_id: str | None = None) -> str:
        session_id = session_id or self.new_session_id()
        await self._run(self._create, session_id, pipeline_id, json.dumps(metadata))
        return session_id

    def _create(self, session_id: str, pipeline_id: str, metadata: str) -> None:
        now = time.time()
        if now - self._pruned_at >= PRUNE_EVERY_S:
            self._prune(now)
        self._db.execute(
            "INSERT INTO sessions (id, pipeline_id, metadata, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (session_id, pipeline_id, metadata, now, now),
        )

    async def exists(self, session_id: str) -> bool:
        return await self._run(self._exists, session_id)

    def _exists(self, session_id: str) -> bool:
        row = self._db.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return row is not None

    async def append(
        self,
        session_id: str,
        role: str,
        text: str,
        turn_id: str | None = None,
        *,
        interrupted: bool = False,
    ) -> None:
        try:
            await self._run(self._append, session_id, role, text, turn_id, interrupted)
        except sqlite3.IntegrityError:  # the turn's session_id references no session
            raise UnknownSession(session_id) from None

    def _append(
        self, session_id: str, role: str, text: str, turn_id: str | None, interrupted: bool
    ) -> None:
        now = time.time()
        # IMMEDIATE: take the write lock before reading MAX(seq). A deferred transaction that
        # upgrades to a write fails at once ("database is locked") when another process (two
        # nodes on one file) wrote in between; an immediate one waits its turn.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            (seq,) = self._db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM turns WHERE session_id = ?",
                (session_id,),
            ).fetchone()
            self._db.execute(
                "INSERT INTO turns (session_id, seq, role, text, turn_id, interrupted, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (session_id, seq, role, text, turn_id, int(interrupted), now),
            )
            self._db.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (now, session_id))
            self._db.execute(
                "DELETE FROM turns WHERE session_id = ? AND seq <= ?",
                (session_id, seq - self.max_turns),
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    async def record(
        self, session_id: str, role: str, text: str, turn_id: str, *, interrupted: bool
    ) -> None:
        """Replace the turn in place, append it, or remove it when `text` is empty."""
        if await self._run(self._replace, session_id, role, text, turn_id, interrupted):
            return
        if text:
            await self.append(session_id, role, text, turn_id, interrupted=interrupted)

    def _replace(
        self, session_id: str, role: str, text: str, turn_id: str, interrupted: bool
    ) -> bool:
        """True if the turn was stored (and is now replaced or removed)."""
        where = " WHERE session_id = ? AND turn_id = ? AND role = ?"
        if not text:
            cursor = self._db.execute("DELETE FROM turns" + where, (session_id, turn_id, role))
            return cursor.rowcount > 0
        cursor = self._db.execute(
            "UPDATE turns SET text = ?, interrupted = ?" + where,
            (text, int(interrupted), session_id, turn_id, role),
        )
        if cursor.rowcount:
            self._db.execute(
                "UPDATE sessions SET updated_at = ? WHERE id = ?", (time.time(), session_id)
            )
        return cursor.rowcount > 0

    async def history(self, session_id: str, limit: int = 50) -> list[Turn]:
        """The last `limit` turns, oldest first."""
        rows = await self._run(self._history, session_id, limit)
        return [Turn(role, text, turn_id, bool(cut)) for role, text, turn_id, cut in reversed(rows)]

    def _history(self, session_id: str, limit: int) -> list[tuple]:
        return self._db.execute(
            "SELECT role, text, turn_id, interrupted FROM turns WHERE session_id = ?"
            " ORDER BY seq DESC LIMIT ?",
            (session_id, limit),
        ).fetchall()

    async def delete(self, session_id: str) -> bool:
        return await self._run(self._delete, session_id)

    def _delete(self, session_id: str) -> bool:
        return self._db.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount > 0

    async def prune(self, now: float | None = None) -> int:
        """Delete conversations untouched for `max_age_s`; how many went."""
        return await self._run(self._prune, time.time() if now is None else now)

    def _prune(self, now: float) -> int:
        self._pruned_at = now
        cursor = self._db.execute(
            "DELETE FROM sessions WHERE updated_at < ?", (now - self.max_age_s,)
        )
        return cursor.rowcount

    async def save_resume_digest(self, session_id: str, digest: str) -> None:
        await self._run(
            self._db.execute,
            "UPDATE sessions SET resume_digest = ? WHERE id = ?",
            (digest, session_id),
        )

    async def resume_digest(self, session_id: str) -> str | None:
        row = await self._run(self._resume_digest, session_id)
        return row[0] if row else None

    def _resume_digest(self, session_id: str) -> tuple | None:
        return self._db.execute(
            "SELECT resume_digest FROM sessions WHERE id = ?", (session_id,)
        ).fetchone()

    async def append_data(self, session_id: str, content: Any, turn_id: str | None) -> int:
        try:
            return await self._run(self._append_data, session_id, json.dumps(content), turn_id)
        except sqlite3.IntegrityError:  # no such session
            raise UnknownSession(session_id) from None

    def _append_data(self, session_id: str, content: str, turn_id: str | None) -> int:
        self._db.execute("BEGIN IMMEDIATE")  # as in _append: numbered under the write lock
        try:
            (seq,) = self._db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM data_messages WHERE session_id = ?",
                (session_id,),
            ).fetchone()
            self._db.execute(
                "INSERT INTO data_messages (session_id, seq, content, turn_id, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (session_id, seq, content, turn_id, time.time()),
            )
            self._db.execute(
                "DELETE FROM data_messages WHERE session_id = ? AND seq <= ?",
                (session_id, seq - self.max_turns),
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return seq

    async def data_since(self, session_id: str, after_seq: int) -> list[DataRecord]:
        rows = await self._run(
            lambda: self._db.execute(
                "SELECT seq, content, turn_id FROM data_messages"
                " WHERE session_id = ? AND seq > ? ORDER BY seq",
                (session_id, after_seq),
            ).fetchall()
        )
        return [DataRecord(seq, json.loads(content), turn_id) for seq, content, turn_id in rows]

    async def last_data_seq(self, session_id: str) -> int:
        (seq,) = await self._run(
            lambda: self._db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM data_messages WHERE session_id = ?",
                (session_id,),
            ).fetchone()
        )
        return seq

    async def ping(self) -> None:
        await self._run(self._db.execute, "SELECT 1")

    async def close(self) -> None:
        await self._run(self._db.close)
        self._thread.shutdown()


def _while_locked(step: Callable[[], object]) -> None:
    """`step()`, again while SQLite answers "database is locked" for up to `OPEN_WAIT_S`.
    Some lock conflicts (switching a new file to WAL while another process does the same)
    are reported at once, without waiting on the connection's busy timeout."""
    deadline = time.monotonic() + OPEN_WAIT_S
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)
