"""`DELETE /api/conversations/{id}`: forget a conversation, with the same proof as resuming.

The proof is the conversation's latest resume token in `X-Resume-Token`, or the app's backend
vouching with `X-Authorize-Secret` (authorize.py). A live session of that conversation is
closed first (4004), so nothing writes its history after it is gone. Answers 204; 403 without
proof (whether or not the conversation exists); 404 when vouched for an unknown one.
A store that cannot be reached answers 503. Embedded pipeline only: with Layercode's cloud,
its own API keeps the history. With several nodes (Redis), the live socket is closed on
whichever node serves it (session_bus.py); should that node not answer, its appends are refused
anyway (`UnknownSession`): nothing rewrites the history once it is gone (docs/scaling.md).
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

from layercode_client.protocol import CloseCode

from .authorize import ApiError, Proof, check_caller, secret_presented
from .logs import session_tag
from .pipeline.authorizer import check_ownership
from .pipeline.stores import StoreUnavailable

log = logging.getLogger("server.conversations")

TOKEN_HEADER = "x-resume-token"


async def delete_conversation(request: Request) -> Response:
    state = request.app.state
    try:
        await check_caller(request)
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
        history = pipeline.stores.history
        await check_ownership(history, session_id, proof)
        await pipeline.connections.end(
            session_id, CloseCode.CONVERSATION_DELETED, "the conversation was deleted"
        )
        await history.delete(session_id)
        log.info("conversation %s deleted", session_tag(session_id))
        return Response(status_code=204)
    except StoreUnavailable as error:
        log.warning("deletion refused: %s", error, exc_info=error.__cause__)
        return ApiError(503, f"{error.message}; try again", "store_unavailable").response()
    except ApiError as error:
        return error.response()
