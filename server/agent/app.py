"""`POST /api/agent`: the demo agent as a Layercode-style webhook (docs/protocol.md).

It checks `layercode-signature` with the configured secret, then answers `text/event-stream`:
one `response.tts` per sentence (so the pipeline can speak the first while the rest is still
on its way), a `response.data`, and `response.end`. Any agent written for Layercode's Webhook
SSE API can take its place (`AGENT_WEBHOOK_URL`). Errors are JSON `{"error": ...}` with a 4xx
status, never a traceback.

Speculative answers (docs/protocol.md §4): the demo agent has no side effects, so it answers a
`message` with `speculative: true` like any other, and acknowledges `message.cancel` (the
speculation was abandoned) with an empty 200 — it has nothing to undo.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..pipeline.signature import HEADER, verify
from ..pipeline.webhook import NOTIFICATIONS, AgentData, AgentEnd, AgentSpeech, to_sse
from .brain import Answer, Clock, reply

log = logging.getLogger("server.agent")

PATH = "/api/agent"
MAX_BODY_BYTES = 256 * 1024


class BodyTooLarge(Exception):
    pass


def error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def read_body(request: Request) -> bytes:
    """The body, refused past MAX_BODY_BYTES before it is all in memory."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BodyTooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise BodyTooLarge
    return bytes(body)


def answer_stream(answer: Answer, turn_id: Any) -> AsyncIterator[bytes]:
    async def events() -> AsyncIterator[bytes]:
        for sentence in answer.sentences:
            yield to_sse(AgentSpeech(sentence), turn_id)
        if answer.data is not None:
            yield to_sse(AgentData(answer.data), turn_id)
        yield to_sse(AgentEnd(), turn_id)

    return events()


def agent_routes(
    secret: str | None, path: str = PATH, *, clock: Clock = dt.datetime.now
) -> list[Route]:
    """The webhook route, to add to a Starlette routing table; `clock` is for tests.

    With a secret every call must carry a valid `layercode-signature`; without one (None or
    empty) the signature is not checked, as for a Layercode agent with verification off.
    """

    async def webhook(request: Request) -> Response:
        try:
            body = await read_body(request)
        except BodyTooLarge:
            return error(f"the event is larger than {MAX_BODY_BYTES} bytes", 413)
        except ClientDisconnect:
            return Response(status_code=400)
        if secret and not verify(request.headers.get(HEADER), body, secret):
            return error(f"missing, stale or invalid {HEADER} header", 401)
        try:
            event = json.loads(body)
        except ValueError:
            return error("the body is not JSON", 400)
        except RecursionError:
            return error("the body is nested too deeply", 400)
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return error("the body must be a JSON object with a string `type`", 400)
        if event["type"] in NOTIFICATIONS:  # session.end, message.cancel: nobody will hear it
            return Response(status_code=200)
        try:
            answer = reply(event, clock)
        except Exception:  # a bug here must not become a traceback on the wire
            log.exception("the demo agent failed on a %s event", event["type"][:100])
            return error("the demo agent failed; see the server log", 500)
        return StreamingResponse(
            answer_stream(answer, event.get("turn_id")),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    return [Route(path, webhook, methods=["POST"])]
