"""Client session keys: unguessable, short-lived, single-use, bound to one session.

`/api/authorize` issues a key; the WebSocket presents it once. A key nobody uses expires after
`ttl_s` (about a minute, like Layercode's); a used key is remembered until then, so a replay is
refused as "already used" rather than "unknown" — the clearer message for whoever debugs it.
Expired entries are swept on each call; no background task is needed.

Resume tokens prove a conversation belongs to whoever resumes it: `/api/authorize` returns a
fresh one with every session (each replaces the last), and resuming presents the latest. Only
a SHA-256 digest is kept, in a `ResumeTokenStore` — in memory here; the embedded pipeline passes
its SQLite history, so a token lives exactly as long as the history it guards and survives a
restart. Both stores answer the same two calls, so a shared store (Redis) can take their place.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from layercode_client.protocol import CloseCode, SessionConfig

KEY_PREFIX = "lcsk_"
RESUME_TOKEN_PREFIX = "lcrt_"


class ResumeTokenStore(Protocol):
    def save_resume_digest(self, session_id: str, digest: str) -> None: ...
    def resume_digest(self, session_id: str) -> str | None: ...


class MemoryResumeTokens:
    """Digests in a dict: for tests and a single process without history."""

    def __init__(self) -> None:
        self._digests: dict[str, str] = {}

    def save_resume_digest(self, session_id: str, digest: str) -> None:
        self._digests[session_id] = digest

    def resume_digest(self, session_id: str) -> str | None:
        return self._digests.get(session_id)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class KeyRefused(Exception):
    """The WebSocket must close with `close_code` and `reason`."""

    def __init__(self, close_code: int, reason: str):
        super().__init__(reason)
        self.close_code = close_code
        self.reason = reason


@dataclass
class SessionGrant:
    """What an authorized key lets its holder do: join this session with this config."""

    session_id: str
    pipeline_id: str
    config: SessionConfig
    metadata: dict = field(default_factory=dict)
    resumed: bool = False


@dataclass
class _Entry:
    grant: SessionGrant
    expires_at: float
    used: bool = False


class SessionKeys:
    def __init__(
        self,
        ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        tokens: ResumeTokenStore | None = None,
    ):
        self.ttl_s = ttl_s
        self.clock = clock
        self.tokens = tokens if tokens is not None else MemoryResumeTokens()
        self._entries: dict[str, _Entry] = {}

    def issue_resume_token(self, session_id: str) -> str:
        """A new resume token for the session; the one issued before stops working."""
        token = RESUME_TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.tokens.save_resume_digest(session_id, token_digest(token))
        return token

    def resume_token_valid(self, session_id: str, token: str | None) -> bool:
        if not token:
            return False
        stored = self.tokens.resume_digest(session_id)
        return stored is not None and hmac.compare_digest(stored, token_digest(token))

    def outstanding(self) -> int:
        """Keys issued and not yet used: sessions about to connect."""
        self._sweep()
        return sum(1 for entry in self._entries.values() if not entry.used)

    def issue(self, grant: SessionGrant) -> str:
        self._sweep()
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        self._entries[key] = _Entry(grant, self.clock() + self.ttl_s)
        return key

    def redeem(self, key: str | None) -> SessionGrant:
        """The key's grant, consuming the key; `KeyRefused` if it cannot be used."""
        self._sweep()
        if not key:
            raise KeyRefused(CloseCode.SESSION_KEY_INVALID, "client_session_key is missing")
        entry = self._entries.get(key)
        if entry is None:
            raise KeyRefused(
                CloseCode.SESSION_KEY_INVALID,
                "client_session_key is unknown or expired; authorize a new session",
            )
        if entry.used:
            raise KeyRefused(
                CloseCode.SESSION_KEY_USED,
                "client_session_key was already used; authorize again to reconnect",
            )
        entry.used = True
        return entry.grant

    def _sweep(self) -> None:
        now = self.clock()
        for key in [k for k, e in self._entries.items() if e.expires_at <= now]:
            del self._entries[key]

    def __len__(self) -> int:
        self._sweep()
        return len(self._entries)
