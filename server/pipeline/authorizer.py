"""Session authorization for the embedded pipeline (used when LAYERCODE_API_KEY is unset).

Answers `/api/authorize` the way Layercode's cloud does — a short-lived single-use key, the
session id (new, or the one being resumed), the session's config — plus this project's
additions (docs/protocol.md §4): the input sample rate chosen from the client's offer,
the `websocket_url` on this server (or on `PUBLIC_URL`, the balancer's address, on every node),
and a `resume_token`. Both generations' names are answered (`session_id` and
`conversation_id`), so the seed's SDK and the newer official SDK each find theirs.

Resuming is proof-carrying: the caller presents the conversation's latest `resume_token`, or is
the app's backend vouching for its user with `AUTHORIZE_SECRET` (the official SDK cannot carry
a token; its app's own authorize endpoint can). Without proof the answer is 403 whether or not
the conversation exists, so ids cannot be probed. The token's digest lives with the history
(keys.py), so a token issued on one node resumes on any node sharing it.

A store that cannot be reached makes a 503 with a reason the caller can act on (try again).
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from layercode_client.protocol import (
    DEFAULT_INPUT_SAMPLE_RATE,
    SUPPORTED_INPUT_SAMPLE_RATES,
    AuthorizeRequest,
    SessionConfig,
)

from ..authorize import ApiError, Proof
from ..config import Settings
from ..hosts import websocket_url
from ..limits import client_address
from .connections import Connections
from .keys import SessionGrant, issue_resume_token, resume_token_valid
from .stores import HistoryStore, Stores, StoreUnavailable

log = logging.getLogger("server.pipeline")

WEBSOCKET_PATH = "/v1/pipelines/websocket"
AGENT_WEBSOCKET_PATH = "/v1/agents/web/websocket"
# This pipeline detects turns itself, from all the audio: clients keep their VAD off and send
# the microphone ungated (layercode_client/vad.py; docs/protocol.md).
CLIENT_VAD = {"enabled": False}


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


async def check_ownership(history: HistoryStore, session_id: str, proof: Proof) -> None:
    """Raise 403 unless `proof` shows the caller owns `session_id`; 404 if vouched but unknown."""
    if proof.vouched:
        if not await history.exists(session_id):
            raise ApiError(404, f"conversation {session_id} was not found", "not_found")
        return
    if not proof.resume_token:
        raise ApiError(
            403,
            "resuming a conversation needs its resume_token (returned by the authorize call "
            "that started it), or the app's backend vouching with X-Authorize-Secret",
            "resume_token_required",
        )
    if not await resume_token_valid(history, session_id, proof.resume_token):
        raise ApiError(
            403,
            "the resume_token does not match this conversation; start a new one",
            "resume_token_invalid",
        )


class EmbeddedAuthorizer:
    def __init__(self, stores: Stores, connections: Connections, settings: Settings):
        self.keys = stores.keys
        self.store = stores.history
        self.connections = connections
        self.settings = settings

    async def authorize(self, request: AuthorizeRequest, http: Request, proof: Proof) -> Response:
        try:
            return await self._authorize(request, http, proof)
        except StoreUnavailable as error:
            log.warning("authorize refused: %s", error, exc_info=error.__cause__)
            raise ApiError(
                503,
                f"sessions are unavailable on this server: {error.message}; try again",
                "store_unavailable",
            ) from error

    async def _authorize(self, request: AuthorizeRequest, http: Request, proof: Proof) -> Response:
        # Live sockets and keys about to connect both take a place.
        if len(self.connections) + await self.keys.outstanding() >= self.settings.max_sessions:
            raise ApiError(
                503,
                f"this server is full ({self.settings.max_sessions} sessions); try again shortly",
                "server_full",
            )
        config = SessionConfig(
            trigger=self.settings.transcription_trigger,
            can_interrupt=self.settings.can_interrupt,
            input_sample_rate=choose_input_rate(request.input_sample_rates),
            vad=CLIENT_VAD,
        )
        resume_id = request.resume_id
        if resume_id is not None:
            await check_ownership(self.store, resume_id, proof)
            session_id = resume_id
        else:
            session_id = await self.store.create(request.target_id, request.metadata)
        grant = SessionGrant(
            session_id=session_id,
            pipeline_id=request.target_id,
            config=config,
            metadata=request.metadata,
            resumed=resume_id is not None,
            client_address=client_address(http, self.settings.trusted_proxies),
        )
        agents_generation = request.agent_id and not request.pipeline_id
        path = AGENT_WEBSOCKET_PATH if agents_generation else WEBSOCKET_PATH
        return JSONResponse(
            {
                "client_session_key": await self.keys.issue(grant),
                "session_id": session_id,
                "conversation_id": session_id,
                "resume_token": await issue_resume_token(self.store, session_id),
                # Where this conversation's response.data count stands (docs/protocol.md).
                "data_seq": await self.store.last_data_seq(session_id) if resume_id else 0,
                "config": config.to_json(),
                "websocket_url": websocket_url(http, self.settings, path),
            }
        )
