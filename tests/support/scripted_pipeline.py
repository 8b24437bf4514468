"""A scripted voice pipeline for browser tests of the client: real HTTP, a real WebSocket.

It serves the demo page (as our server does), answers `/api/authorize` with whatever config a
test sets, and on its WebSocket records every client message with its arrival time and sends
whatever the test tells it to, when it says so. The test thread drives it; the server runs on
its own thread and loop (tests.support.servers.serve).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from server import static
from server.config import Settings


@dataclass
class Received:
    connection: int
    message: dict
    at: float

    @property
    def type(self) -> str:
        return self.message.get("type", "")


@dataclass
class ScriptedPipeline:
    trigger: str = "automatic"
    can_interrupt: bool = True
    input_sample_rate: int | None = 16000  # None: answer without config.audio
    vad: dict | None = field(default_factory=lambda: {"enabled": False})  # None: no config.vad
    authorize_failure: tuple[int, str] | None = None  # (status, body) to refuse with
    websocket_url: str | None = None  # answer this instead of our own socket's URL
    greeting: list[dict] = field(default_factory=list)  # sent as soon as a socket opens
    pages: dict[str, str] = field(default_factory=dict)  # name → HTML at /test-pages/<name>
    authorizations: list[dict] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    closes: list[tuple[int, int | None]] = field(default_factory=list)  # (connection, code)
    _sockets: dict[int, WebSocket] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop | None = None
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def app(self) -> Starlette:
        app = Starlette(
            routes=[
                Route("/api/authorize", self._authorize, methods=["POST"]),
                WebSocketRoute("/ws", self._socket),
                Route("/test-pages/{name}", self._page),
                *static.routes,
            ]
        )
        app.state.settings = Settings()
        app.state.client_wheel = static.load_client_wheel()
        app.state.client_mpy = static.load_client_mpy()
        return app

    # -- server side ---------------------------------------------------------------------------

    async def _authorize(self, request: Request):
        body = await request.json()
        self.authorizations.append(body)
        if self.authorize_failure is not None:
            status, text = self.authorize_failure
            if text.startswith("{"):
                return JSONResponse(json.loads(text), status_code=status)
            return PlainTextResponse(text, status_code=status)
        config: dict = {"transcription": {"trigger": self.trigger,
                                          "can_interrupt": self.can_interrupt}}  # fmt: skip
        if self.input_sample_rate is not None:
            config["audio"] = {"input_sample_rate": self.input_sample_rate}
        if self.vad is not None:
            config["vad"] = self.vad
        host = request.headers["host"]
        return JSONResponse(
            {
                "client_session_key": f"key_{len(self.authorizations)}",
                "session_id": body.get("session_id") or f"sess_scripted_{len(self.authorizations)}",
                "config": config,
                "websocket_url": self.websocket_url or f"ws://{host}/ws",
            }
        )

    async def _page(self, request: Request):
        html = self.pages.get(request.path_params["name"])
        if html is None:
            return PlainTextResponse("no such test page", status_code=404)
        return HTMLResponse(html)

    async def _socket(self, websocket: WebSocket):
        self._loop = asyncio.get_running_loop()
        await websocket.accept()
        number = next(self._ids)
        self._sockets[number] = websocket
        for message in self.greeting:  # before client.ready, as Layercode's cloud may
            await websocket.send_text(json.dumps(message))
        try:
            while True:
                text = await websocket.receive_text()
                self.received.append(Received(number, json.loads(text), time.monotonic()))
        except WebSocketDisconnect as disconnect:
            self.closes.append((number, disconnect.code))
        finally:
            self._sockets.pop(number, None)

    # -- test side -----------------------------------------------------------------------------

    @property
    def connection(self) -> int:
        return max(self._sockets) if self._sockets else 0

    def send(self, message: dict, connection: int | None = None) -> float:
        """Send `message` to the newest (or given) connection; returns when it went out."""
        socket = self._sockets[connection or self.connection]
        future = asyncio.run_coroutine_threadsafe(socket.send_text(json.dumps(message)), self._loop)
        future.result(5)
        return time.monotonic()

    def close(self, code: int, reason: str = "", connection: int | None = None) -> None:
        socket = self._sockets[connection or self.connection]
        asyncio.run_coroutine_threadsafe(socket.close(code, reason), self._loop).result(5)

    def messages(self, type_: str, connection: int | None = None) -> list[Received]:
        return [
            r
            for r in self.received
            if r.type == type_ and (connection is None or r.connection == connection)
        ]

    def audio(self, connection: int | None = None) -> bytes:
        return b"".join(
            base64.b64decode(r.message["content"])
            for r in self.messages("client.audio", connection)
        )

    def wait_for(self, page, type_: str, count: int = 1, timeout_s: float = 15.0) -> list[Received]:
        """Wait (dispatching the page's events) until `count` messages of `type_` arrived."""
        deadline = time.monotonic() + timeout_s
        while len(found := self.messages(type_)) < count:
            if time.monotonic() > deadline:
                kinds = sorted({r.type for r in self.received})
                raise TimeoutError(f"{count}× {type_} not received in {timeout_s} s; got {kinds}")
            page.wait_for_timeout(20)
        return found
