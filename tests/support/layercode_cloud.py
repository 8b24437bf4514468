"""A local stand-in for Layercode's cloud authorize API, speaking its HTTP contract.

The only mock in the suite, because Layercode's cloud is an outside service this machine cannot
reach. It records what it received (so tests check the Bearer key and the forwarded body) and
answers as a test tells it: success, a 4xx, a 5xx, a body that is not JSON, or a hang.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SESSION_RESPONSE = {
    "client_session_key": "csk_standin_0123456789",
    "session_id": "sess_standin_1",
    "config": {"transcription": {"trigger": "automatic", "can_interrupt": True}},
}


@dataclass
class StandIn:
    mode: str = "ok"  # ok | 4xx | 5xx | not-json | hang
    received: list[dict] = field(default_factory=list)
    response: dict = field(default_factory=lambda: dict(SESSION_RESPONSE))

    async def handle(self, request: Request) -> Response:
        raw = await request.body()
        self.received.append(
            {
                "path": request.url.path,
                "authorization": request.headers.get("authorization"),
                "content_type": request.headers.get("content-type"),
                "body": json.loads(raw) if raw else None,
                "raw": raw,
            }
        )
        if self.mode == "4xx":
            # Echo the Authorization header back, as a careless upstream might: the proxy
            # must never pass it on.
            return JSONResponse(
                {"error": f"invalid pipeline id (auth was {request.headers.get('authorization')})"},
                status_code=401,
            )
        if self.mode == "5xx":
            return Response("upstream exploded", status_code=503)
        if self.mode == "not-json":
            return Response("<html>maintenance</html>", media_type="text/html")
        if self.mode == "hang":
            await asyncio.sleep(30)
        return JSONResponse(self.response)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/pipelines/authorize_session", self.handle, methods=["POST"]),
                Route("/v1/agents/web/authorize_session", self.handle, methods=["POST"]),
            ]
        )
