"""`POST /api/agent`: the demo agent as a Layercode-style webhook (PROTOCOL §3).

It checks `layercode-signature` with the configured secret, then answers `text/event-stream`:
one `response.tts` per sentence, a `response.data`, and `response.end`. Any agent written for
Layercode's Webhook SSE API can take its place (`AGENT_WEBHOOK_URL`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..pipeline.signature import HEADER, verify
from .brain import reply

MAX_BODY_BYTES = 256 * 1024


def sse(payload: dict) -> bytes:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


def agent_routes(secret: str | None, path: str = "/api/agent") -> list[Route]:
    async def webhook(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return JSONResponse({"error": "the event is too large"}, status_code=413)
        if secret and not verify(request.headers.get(HEADER), body, secret):
            return JSONResponse({"error": f"missing or invalid {HEADER} header"}, status_code=401)
        try:
            event = json.loads(body)
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return JSONResponse(
                {"error": "the body must be an object with a string `type`"}, status_code=400
            )
        turn_id = event.get("turn_id")
        if event["type"] == "session.end":
            return Response(status_code=204)
        answer = reply(event)

        async def stream() -> AsyncIterator[bytes]:
            for sentence in answer.sentences:
                yield sse({"type": "response.tts", "content": sentence, "turn_id": turn_id})
            if answer.data is not None:
                yield sse({"type": "response.data", "content": answer.data, "turn_id": turn_id})
            yield sse({"type": "response.end", "turn_id": turn_id})

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    return [Route(path, webhook, methods=["POST"])]
