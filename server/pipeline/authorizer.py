"""Session authorization for the embedded pipeline (used when LAYERCODE_API_KEY is unset).

Answers `/api/authorize` the way Layercode's cloud does — a short-lived single-use key, the
session id (new, or the one being resumed), the session's config — plus this project's
additions (docs/protocol.md §4): the input sample rate chosen from the client's offer, and
the `websocket_url` on this server. Both generations' names are answered (`session_id` and
`conversation_id`), so the seed's SDK and the newer official SDK each find theirs.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from layercode_client.protocol import (
    DEFAULT_INPUT_SAMPLE_RATE,
    SUPPORTED_INPUT_SAMPLE_RATES,
    AuthorizeRequest,
    SessionConfig,
)

from ..authorize import ApiError
from .keys import SessionGrant, SessionKeys
from .store import SessionStore

WEBSOCKET_PATH = "/v1/pipelines/websocket"
AGENT_WEBSOCKET_PATH = "/v1/agents/web/websocket"


def choose_input_rate(offered: list[int] | None) -> int:
    """The best rate both sides support: the client's order of preference, 8000 by default."""
    if not offered:
        return DEFAULT_INPUT_SAMPLE_RATE
    for rate in offered:
        if rate in SUPPORTED_INPUT_SAMPLE_RATES:
            return rate
    raise ApiError(
        400,
        "none of the offered audio.input_sample_rates is supported; offer "
        + " or ".join(map(str, SUPPORTED_INPUT_SAMPLE_RATES)),
    )


def websocket_url(http: Request, path: str) -> str:
    scheme = "wss" if http.url.scheme == "https" else "ws"
    return f"{scheme}://{http.headers.get('host', http.url.netloc)}{path}"


class EmbeddedAuthorizer:
    def __init__(
        self, keys: SessionKeys, store: SessionStore, *, trigger: str, can_interrupt: bool
    ):
        self.keys = keys
        self.store = store
        self.trigger = trigger
        self.can_interrupt = can_interrupt

    async def authorize(self, request: AuthorizeRequest, http: Request) -> Response:
        config = SessionConfig(
            trigger=self.trigger,
            can_interrupt=self.can_interrupt,
            input_sample_rate=choose_input_rate(request.input_sample_rates),
        )
        resume_id = request.resume_id
        if resume_id is not None:
            if not self.store.exists(resume_id):
                raise ApiError(
                    404, f"session {resume_id} was not found; leave out session_id to start anew"
                )
            session_id = resume_id
        else:
            session_id = self.store.create(request.target_id, request.metadata)
        grant = SessionGrant(
            session_id=session_id,
            pipeline_id=request.target_id,
            config=config,
            metadata=request.metadata,
            resumed=resume_id is not None,
        )
        agents_generation = request.agent_id and not request.pipeline_id
        path = AGENT_WEBSOCKET_PATH if agents_generation else WEBSOCKET_PATH
        return JSONResponse(
            {
                "client_session_key": self.keys.issue(grant),
                "session_id": session_id,
                "conversation_id": session_id,
                "config": config.to_json(),
                "websocket_url": websocket_url(http, path),
            }
        )
