"""The embedded pipeline's WebSocket endpoint, at Layercode's paths.

Checks, before anything else, the Host and Origin (hosts.py: the same allowlist as CORS; a
connection without Origin is not a browser page and is allowed), that the server is not
draining, the `client_session_key`, and that the node has room (`MAX_SESSIONS`). A refusal is
made after accepting, as a close code with a reason (a refusal during the handshake would reach
the browser as a bare failure, without the reason). Then the session runs until either side
closes, the session is replaced by a newer connection, the client stays silent for
`IDLE_TIMEOUT` (4008), or the server drains (1012). Close codes: close_codes.py and
docs/protocol-additions.md.

Frames reach the session through `_text_frames`, which owns the receive side: binary frames
and over-long `client.response.text`/`data` get an `error` and are dropped there, so the
session only ever sees frames within the limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator

from starlette.websockets import WebSocket, WebSocketDisconnect

from layercode_client.protocol import CloseCode, ErrorMessage

from ..config import Settings
from ..hosts import host_allowed, origin_allowed
from ..logs import session_tag
from . import close_codes
from .connections import Connection
from .keys import KeyRefused
from .session import PipelineSession

log = logging.getLogger("server.pipeline")

# Only frames that may carry a long text are parsed here (audio frames never match: base64 has
# no quotes), and only when the whole frame is longer than the limit.
TEXT_MESSAGE = re.compile(r'"type"\s*:\s*"client\.response\.(?:text|data)"')


def _too_long(frame: str, limit: int) -> bool:
    """Whether `frame` is a client.response.text/data whose content exceeds `limit` chars."""
    if len(frame) <= limit or not TEXT_MESSAGE.search(frame):
        return False
    try:
        message = json.loads(frame)
    except (ValueError, RecursionError):
        return False  # the session answers malformed frames itself
    if not isinstance(message, dict):
        return False
    content = message.get("content")
    if isinstance(content, str):
        return len(content) > limit
    try:
        return len(json.dumps(content)) > limit
    except (ValueError, TypeError, RecursionError):
        return False


async def _text_frames(
    websocket: WebSocket, connection: Connection, settings: Settings
) -> AsyncIterator[str]:
    """Text frames until the client leaves, goes idle, or the connection is stopped."""
    stopped = asyncio.create_task(connection.stopped.wait(), name="connection-stopped")
    try:
        while True:
            receive = asyncio.create_task(websocket.receive(), name="websocket-receive")
            done, _ = await asyncio.wait(
                {receive, stopped},
                timeout=settings.idle_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if receive not in done:
                receive.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await receive
                if not done:
                    connection.stop(
                        close_codes.IDLE_TIMEOUT,
                        f"idle timeout: nothing received for {settings.idle_timeout:g} s",
                    )
                return
            message = receive.result()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                text = message["text"]
                if _too_long(text, settings.max_message_chars):
                    error = ErrorMessage(
                        code="message_too_long",
                        message=f"the message content is longer than "
                        f"{settings.max_message_chars} characters (MAX_MESSAGE_CHARS); dropped",
                    )
                    await websocket.send_text(error.encode())
                    continue
                yield text
            elif message.get("bytes") is not None:
                error = ErrorMessage(
                    code="protocol_error", message="binary frames are not supported"
                )
                await websocket.send_text(error.encode())
    finally:
        stopped.cancel()


async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    log.info("websocket refused: %s", reason)
    with contextlib.suppress(RuntimeError):
        await websocket.close(code, reason)


async def pipeline_socket(websocket: WebSocket) -> None:
    pipeline = websocket.app.state.pipeline
    settings: Settings = websocket.app.state.settings
    key = websocket.query_params.get("client_session_key")
    await websocket.accept()
    if not host_allowed(websocket, settings) or not origin_allowed(websocket, settings):
        await _refuse(
            websocket,
            close_codes.ORIGIN_REFUSED,
            "this page's origin may not connect; add it to CORS_ALLOW_ORIGINS on the server",
        )
        return
    if websocket.app.state.draining:
        await _refuse(websocket, close_codes.SERVICE_RESTART, "the server is restarting: reconnect")
        return
    try:
        grant = pipeline.keys.redeem(key)
    except KeyRefused as refused:
        await _refuse(websocket, refused.close_code, refused.reason)
        return
    if len(pipeline.connections) >= settings.max_sessions and not pipeline.connections.get(
        grant.session_id
    ):
        await _refuse(
            websocket,
            close_codes.TRY_AGAIN_LATER,
            f"this server is full ({settings.max_sessions} sessions); try again shortly",
        )
        return
    connection = await pipeline.connections.open(grant.session_id)
    tag = session_tag(grant.session_id)

    async def close(code: int, reason: str) -> None:
        await websocket.close(code, reason)

    try:
        services = pipeline.services_for(websocket.scope)
        session = PipelineSession(grant, services, websocket.send_text, close)
        connection.session = session
        await session.run(_text_frames(websocket, connection, settings))
    except WebSocketDisconnect:
        pass
    except Exception:
        log.exception("session %s failed", tag)
        connection.stop(CloseCode.INTERNAL_ERROR, "the pipeline failed; see server log")
    finally:
        pipeline.connections.release(connection)
    if connection.stop_code is not None:
        log.info("session %s closed: %s", tag, connection.stop_reason)
        with contextlib.suppress(Exception):  # the client may be gone already
            await websocket.close(connection.stop_code, connection.stop_reason)
