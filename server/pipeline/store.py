"""Session history in SQLite, so a resumed session continues — across server restarts too.

One file under DATA_DIR, two tables: sessions and their turns (who said what, in order).
Writes happen once per turn, never on the audio path; WAL mode keeps each one well under a
millisecond, so calling it from the event loop is fine.

Retention is bounded both ways: each conversation keeps its last `max_turns` turns (older ones
are pruned as new ones are appended), and conversations untouched for `max_age_s` are deleted
(checked at start and then at most once an hour, as sessions are created). Sessions also keep
the digest of their latest resume token (keys.py), so ownership lives and dies with the history.
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

SESSION_PREFIX = "sess_"
PRUNE_EVERY_S = 3600.0


@dataclass(frozen=True)
class Turn:
    role: str
    text: str
    turn_id: str | None = None

    def to_dict(self) -> dict:
        return {"role": self.role, "text": self.text}


class SessionStore:
    def __init__(self, path: Path, *, max_turns: int = 200, max_age_s: float = 30 * 86400.0):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_turns = max_turns
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(sessions)")}
        if "resume_digest" not in columns:  # a file from before resume tokens
            self._db.execute("ALTER TABLE sessions ADD COLUMN resume_digest TEXT")
        self._pruned_at = 0.0
        self.prune()

    @staticmethod
    def new_session_id() -> str:
        return SESSION_PREFIX + secrets.token_hex(12)

    def create(self, pipeline_id: str, metadata: dict, session_id: str | None = None) -> str:
        session_id = session_id or self.new_session_id()
        now = time.time()
        if now - self._pruned_at >= PRUNE_EVERY_S:
            self.prune(now)
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

    def append(self, session_id: str, role: str, text: str, turn_id: str | None = None) -> None:
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            try:
                (seq,) = self._db.execute(
                    "SELECT COALESCE(MAX(seq), 0) + 1 FROM turns WHERE session_id = ?",
                    (session_id,),
                ).fetchone()
                self._db.execute(
                    "INSERT INTO turns (session_id, seq, role, text, turn_id, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (session_id, seq, role, text, turn_id, now),
                )
                self._db.execute(
                    "UPDATE sessions SET updated_at = ? WHERE id = ?", (now, session_id)
                )
                self._db.execute(
                    "DELETE FROM turns WHERE session_id = ? AND seq <= ?",
                    (session_id, seq - self.max_turns),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def history(self, session_id: str, limit: int = 50) -> list[Turn]:
        """The last `limit` turns, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT role, text, turn_id FROM turns WHERE session_id = ?"
                " ORDER BY seq DESC LIMIT ?",
                (session_id, limit),
            ).fetchall()
        return [Turn(role, text, turn_id) for role, text, turn_id in reversed(rows)]

    def prune(self, now: float | None = None) -> int:
        """Delete conversations untouched for `max_age_s`; how many went."""
        now = time.time() if now is None else now
        self._pruned_at = now
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM sessions WHERE updated_at < ?", (now - self.max_age_s,)
            )
        return cursor.rowcount

    def delete(self, session_id: str) -> bool:
        """Delete a conversation and its turns; False if there was none."""
        with self._lock:
            cursor = self._db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
        return cursor.rowcount > 0

    def save_resume_digest(self, session_id: str, digest: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE sessions SET resume_digest = ? WHERE id = ?", (digest, session_id)
            )

    def resume_digest(self, session_id: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT resume_digest FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        with self._lock:
            self._db.close()
