"""Client session keys: unguessable, short-lived, single-use, bound to one session.

`/api/authorize` issues a key; the WebSocket presents it once. A key nobody uses expires after
`ttl_s` (about a minute, like Layercode's); a used key is remembered until then, so a replay is
refused as "already used" rather than "unknown" — the clearer message for whoever debugs it.
Expired entries are swept on each call; no background task is needed.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from layercode_client.protocol import CloseCode, SessionConfig

from ..errors import ServerError

KEY_PREFIX = "lcsk_"


class KeyRefused(ServerError):
    """The WebSocket must close with `close_code` and `reason`."""

    CODES: ClassVar[dict[int, str]] = {CloseCode.SESSION_KEY_INVALID: "session_key_invalid",
             CloseCode.SESSION_KEY_USED: "session_key_used"}  # fmt: skip

    def __init__(self, close_code: int, reason: str):
        super().__init__(reason, code=self.CODES.get(close_code, "session_key_refused"))
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
    def __init__(self, ttl_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.ttl_s = ttl_s
        self.clock = clock
        self._entries: dict[str, _Entry] = {}

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
