"""The embedded pipeline's WebSocket endpoint, at Layercode's paths.

Checks the `client_session_key` before anything else: an unknown, expired or reused key is
accepted only to be closed at once with a close code and a reason (a refusal during the
handshake would reach the browser as a bare failure, without the reason); a key store that
cannot be reached closes with 1013 (try again later). Then the session runs
until either side closes. Binary frames are not part of the protocol: they get an error message.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.websockets import WebSocket, WebSocketDisconnect

from layercode_client.protocol import CloseCode, ErrorMessage

from .keys import KeyRefused
from .session import PipelineSession
from .stores import StoreUnavailable

log = logging.getLogger("server.pipeline")


async def _text_frames(websocket: WebSocket) -> AsyncIterator[str]:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            yield message["text"]
        elif message.get("bytes") is not None:
            error = ErrorMessage(code="protocol_error", message="binary frames are not supported")
            await websocket.send_text(error.encode())


async def pipeline_socket(websocket: WebSocket) -> None:
    pipeline = websocket.app.state.pipeline
    key = websocket.query_params.get("client_session_key")
    await websocket.accept()
    try:
        grant = await pipeline.stores.keys.redeem(key)
    except KeyRefused as refused:
        log.info("websocket refused: %s", refused.reason)
        await websocket.close(refused.close_code, refused.reason)
        return
    except StoreUnavailable as error:
        log.warning("websocket refused: %s", error, exc_info=error.__cause__)
        await websocket.close(CloseCode.TRY_AGAIN_LATER, f"{error.message}; try again")
        return

    async def close(code: int, reason: str) -> None:
        await websocket.close(code, reason)

    services = pipeline.services_for(websocket.scope)
    session = PipelineSession(grant, services, websocket.send_text, close)
    try:
        await session.run(_text_frames(websocket))
    except WebSocketDisconnect:
        pass
    except Exception:
        log.exception("session %s failed", grant.session_id)
        with contextlib.suppress(RuntimeError):
            await websocket.close(CloseCode.INTERNAL_ERROR, "the pipeline failed; see server log")
