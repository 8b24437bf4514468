"""The server's errors, under one base with a stable `code` and whether retrying can help.

An error that crosses the wire becomes a JSON `{"error": ...}` answer, an `error` WebSocket
message or a close code with a reason — never a traceback. Codes are stable: clients and logs
may match on them.

- `SettingsError`: `invalid_setting`;
- `ApiError` (server/authorize.py): `bad_request`, `not_found`, `body_too_large`,
  `upstream_error`, `upstream_unavailable`, `upstream_timeout` (by HTTP status);
- `KeyRefused` (server/pipeline/keys.py): `session_key_invalid`, `session_key_used`;
- `AgentError`: `agent_unreachable`, `agent_http_error`, `agent_unauthorized`,
  `agent_bad_response`, `agent_timeout`, `agent_stream_broken`.
"""

from __future__ import annotations

from layercode_client.errors import LayercodeError


class ServerError(LayercodeError):
    """Base of the server's errors: the client library's base (`code`, `message`, `retryable`,
    `to_dict`), so both ends share one error shape; only the default code differs."""

    code = "server_error"


class SettingsError(ServerError, ValueError):
    """A setting has a value the server cannot use; the message names the variable."""

    code = "invalid_setting"


class AgentError(ServerError):
    """The agent could not answer this turn.

    `message` says what to check and never contains the webhook secret; `retryable` says
    whether the same call could succeed later; `status` is the HTTP status when there was one.
    """

    def __init__(
        self, code: str, message: str, *, retryable: bool = False, status: int | None = None
    ):
        super().__init__(message, code=code, retryable=retryable)
        self.status = status

    def __repr__(self) -> str:
        return f"AgentError({self.code!r}, {self.message!r})"
