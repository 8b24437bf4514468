"""Client session keys: unguessable, short-lived, single-use, bound to one session.

`/api/authorize` issues a key; the WebSocket presents it once. A key nobody uses expires after
`ttl_s` (about a minute, like Layercode's); a used key is remembered until then, so a replay is
refused as "already used" rather than "unknown" — the clearer message for whoever debugs it.
Expired entries are swept on each call; no background task is needed.

`SessionKeys` keeps keys in this process (one node, the default); `keys_redis.RedisKeys` keeps
them in Redis for many nodes. Both answer `stores.KeyStore`; a grant travels between nodes as
JSON (`SessionGrant.to_json`), so a field added to it reaches every node.

Resume tokens prove a conversation belongs to whoever resumes it: `/api/authorize` returns a
fresh one with every session (each replaces the last), and resuming presents the latest. Only
a SHA-256 digest is kept, and it is kept with the history (`stores.HistoryStore`: a column of
the session's row in SQLite or PostgreSQL), not with the keys. A token must live exactly as long
as the conversation it guards — deleted with it, pruned with it, surviving restarts — and every
node must see it; the history store already has all three properties, while Redis holds keys
for a minute and may be run as a cache that evicts. So a token issued on one node is checked on
any other wherever the history is shared, and needs no store of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from layercode_client.protocol import CloseCode, SessionConfig

from ..errors import ServerError

if TYPE_CHECKING:
    from .stores import HistoryStore

KEY_PREFIX = "lcsk_"
RESUME_TOKEN_PREFIX = "lcrt_"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


async def issue_resume_token(history: HistoryStore, session_id: str) -> str:
    """A new resume token for the session; the one issued before stops working."""
    token = RESUME_TOKEN_PREFIX + secrets.token_urlsafe(32)
    await history.save_resume_digest(session_id, token_digest(token))
    return token


async def resume_token_valid(history: HistoryStore, session_id: str, token: str | None) -> bool:
    if not token:
        return False
    stored = await history.resume_digest(session_id)
    return stored is not None and hmac.compare_digest(stored, token_digest(token))


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
    client_address: str = ""  # who asked for the key (limits.client_address): for penalties

    def to_json(self) -> dict:
        return {
            "session_id": self.session_id,
            "pipeline_id": self.pipeline_id,
            "config": self.config.to_json(),
            "metadata": self.metadata,
            "resumed": self.resumed,
            "client_address": self.client_address,
        }

    @classmethod
    def from_json(cls, data: dict) -> SessionGrant:
        return cls(
            session_id=data["session_id"],
            pipeline_id=data["pipeline_id"],
            config=SessionConfig.from_json(data["config"]),
            metadata=data.get("metadata") or {},
            resumed=bool(data.get("resumed")),
            client_address=str(data.get("client_address") or ""),
        )


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_refused(key: str | None, used: bool) -> KeyRefused:
    """The refusal for a key that is missing, unknown or expired, or (`used`) already used."""
    if not key:
        return KeyRefused(CloseCode.SESSION_KEY_INVALID, "client_session_key is missing")
    if used:
        return KeyRefused(
            CloseCode.SESSION_KEY_USED,
            "client_session_key was already used; authorize again to reconnect",
        )
    return KeyRefused(
        CloseCode.SESSION_KEY_INVALID,
        "client_session_key is unknown or expired; authorize a new session",
    )


@dataclass
class _Entry:
    grant: SessionGrant
    expires_at: float
    used: bool = False


class SessionKeys:
    """Keys in this process's memory: the single-node default."""

    backend = "memory"

    def __init__(self, ttl_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.ttl_s = ttl_s
        self.clock = clock
        self._entries: dict[str, _Entry] = {}

    async def issue(self, grant: SessionGrant) -> str:
        self._sweep()
        key = new_key()
        self._entries[key] = _Entry(grant, self.clock() + self.ttl_s)
        return key

    async def redeem(self, key: str | None) -> SessionGrant:
        """The key's grant, consuming the key; `KeyRefused` if it cannot be used."""
        self._sweep()
        entry = self._entries.get(key) if key else None
        if entry is None or entry.used:
            raise key_refused(key, used=entry is not None)
        entry.used = True
        return entry.grant

    async def outstanding(self) -> int:
        """Keys issued and not yet used: sessions about to connect."""
        self._sweep()
        return sum(1 for entry in self._entries.values() if not entry.used)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _sweep(self) -> None:
        now = self.clock()
        for key in [k for k, e in self._entries.items() if e.expires_at <= now]:
            del self._entries[key]

    def __len__(self) -> int:
        self._sweep()
        return len(self._entries)
