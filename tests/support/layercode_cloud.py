"""A local stand-in for Layercode's cloud authorize API, speaking its HTTP contract.

The only mock in the suite, because Layercode's cloud is an outside service this machine cannot
reach. It records what it received (so tests check the Bearer key and the forwarded body) and
answers as a test tells it: success, a 4xx, a 5xx, a body that is not JSON, a hang — or as a
misbehaving upstream would: echoing the Authorization header back (in a 2xx body, upper-cased,
past the first 300 characters, behind JSON escapes), dripping a byte at a time, sending tens of
megabytes, or redirecting.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

SESSION_RESPONSE = {
    "client_session_key": "csk_standin_0123456789",
    "session_id": "sess_standin_1",
    "config": {"transcription": {"trigger": "automatic", "can_interrupt": True}},
}


@dataclass
class StandIn:
    mode: str = "ok"  # ok | 4xx | 5xx | not-json | hang | echo-* | drip | huge | redirect
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
        auth = request.headers.get("authorization", "")
        if self.mode == "echo-2xx":  # a debugging upstream that echoes the request's headers
            return JSONResponse({**self.response, "echo": {"authorization": auth}})
        if self.mode == "echo-escaped":  # the same, every character a JSON \u escape
            escaped = "".join(f"\\u{ord(c):04x}" for c in auth)
            body = json.dumps(self.response)[:-1] + f', "echo": "{escaped}"}}'
            return Response(body, media_type="application/json")
        if self.mode == "echo-upper":
            return JSONResponse({"error": f"bad credentials {auth.upper()}"}, status_code=403)
        if self.mode == "echo-late":  # the key where a 300-character cut would split it
            return JSONResponse({"error": "x" * 270 + f" auth was {auth}"}, status_code=401)
        if self.mode == "echo-text":  # a plain-text error page with the key in it
            return Response(f"denied for {auth.lower()}", status_code=401)
        if self.mode == "drip":
            return StreamingResponse(self._drip(), media_type="application/json")
        if self.mode == "huge":
            return StreamingResponse(self._huge(), media_type="application/json")
        if self.mode == "redirect":
            return JSONResponse(
                self.response, status_code=302, headers={"location": "https://elsewhere.example/"}
            )
        return JSONResponse(self.response)

    async def _drip(self):
        """A valid answer, one byte every 0.2 s: never a gap long enough for a read timeout."""
        for byte in json.dumps(self.response).encode():
            yield bytes([byte])
            await asyncio.sleep(0.2)

    async def _huge(self):
        yield b'{"client_session_key": "k", "pad": "'
        for _ in range(60 * 16):  # 60 MB
            yield b"x" * 65536
        yield b'"}'

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/pipelines/authorize_session", self.handle, methods=["POST"]),
                Route("/v1/agents/web/authorize_session", self.handle, methods=["POST"]),
            ]
        )
