"""Session history in SQLite, so a resumed session continues — across server restarts too.

One file under DATA_DIR, two tables: sessions and their turns (who said what, in order).
Writes happen once per turn, never on the audio path; WAL mode keeps each one well under a
millisecond, so calling it from the event loop is fine.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

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
"""
# Added after the first release: an assistant turn the user cut short (its text is what was heard).
MIGRATIONS = ["ALTER TABLE turns ADD COLUMN interrupted INTEGER NOT NULL DEFAULT 0"]

SESSION_PREFIX = "sess_"


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


class SessionStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(turns)")}
        if "interrupted" not in columns:
            for statement in MIGRATIONS:
                self._db.execute(statement)

    @staticmethod
    def new_session_id() -> str:
        return SESSION_PREFIX + secrets.token_hex(12)

    def create(self, pipeline_id: str, metadata: dict, session_id: str | None = None) -> str:
        session_id = session_id or self.new_session_id()
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO sessions (id, pipeline_id, metadata, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (session_id, pipeline_id, json.dumps(metadata), now, now),
            )
        return session_id

    def exists(self, session_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return row is not None

    def append(
        self,
        session_id: str,
        role: str,
        text: str,
        turn_id: str | None = None,
        *,
        interrupted: bool = False,
    ) -> None:
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            try:
                (seq,) = self._db.execute(
                    "SELECT COALESCE(MAX(seq), 0) + 1 FROM turns WHERE session_id = ?",
                    (session_id,),
                ).fetchone()
                self._db.execute(
                    "INSERT INTO turns (session_id, seq, role, text, turn_id, interrupted,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (session_id, seq, role, text, turn_id, int(interrupted), now),
                )
                self._db.execute(
                    "UPDATE sessions SET updated_at = ? WHERE id = ?", (now, session_id)
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def history(self, session_id: str, limit: int = 50) -> list[Turn]:
        """The last `limit` turns, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT role, text, turn_id, interrupted FROM turns WHERE session_id = ?"
                " ORDER BY seq DESC LIMIT ?",
                (session_id, limit),
            ).fetchall()
        return [Turn(role, text, turn_id, bool(cut)) for role, text, turn_id, cut in reversed(rows)]

    def close(self) -> None:
        with self._lock:
            self._db.close()
