"""`DELETE /api/conversations/{id}`: forget a conversation, with the same proof as resuming.

The proof is the conversation's latest resume token in `X-Resume-Token`, or the app's backend
vouching with `X-Authorize-Secret` (authorize.py). A live session of that conversation is
closed first (4004), so nothing writes its history after it is gone. Answers 204; 403 without
proof (whether or not the conversation exists); 404 when vouched for an unknown one.
Embedded pipeline only: with Layercode's cloud, its own API keeps the history.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

from .authorize import ApiError, Proof, check_caller, secret_presented
from .logs import session_tag
from .pipeline import close_codes
from .pipeline.authorizer import check_ownership

log = logging.getLogger("server.conversations")

TOKEN_HEADER = "x-resume-token"


async def delete_conversation(request: Request) -> Response:
    state = request.app.state
    try:
        check_caller(request)
        if state.pipeline is None:
            raise ApiError(
                404, "conversations are kept by Layercode's cloud, not this server", "not_found"
            )
        session_id = request.path_params["conversation_id"]
        if not session_id.isascii() or len(session_id) > 128:  # never an id this server made
            raise ApiError(404, "no such conversation", "not_found")
        proof = Proof(
            resume_token=request.headers.get(TOKEN_HEADER),
            vouched=secret_presented(request, state.settings.authorize_secret),
        )
        pipeline = state.pipeline
        check_ownership(pipeline.keys, pipeline.store, session_id, proof)
        await pipeline.connections.end(
            session_id, close_codes.CONVERSATION_DELETED, "the conversation was deleted"
        )
        pipeline.store.delete(session_id)
        log.info("conversation %s deleted", session_tag(session_id))
        return Response(status_code=204)
    except ApiError as error:
        return error.response()
