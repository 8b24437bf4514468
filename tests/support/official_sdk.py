"""The official `@layercode/js-sdk` in a page, against our server: for compatibility tests and
the client benchmark. Setup vendors the SDK from the npm registry (server/vendor.py)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from server.vendor import OFFICIAL_SDK

# The SDK's callbacks write what they saw onto the page, for the test or benchmark to read.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>official js-sdk</title><link rel="icon" href="data:,">
<script src="/official/layercode-js-sdk.min.js"></script></head>
<body data-status="loading">
<script>
  window.seen = {messages: [], data: [], errors: []};
  const client = new LayercodeClient.default({
    agentId: "demo",
    authorizeSessionEndpoint: "/api/authorize",
    onStatusChange: (status) => {
      document.body.dataset.status = status;
      if (status === "connected") document.body.dataset.connectedMs = performance.now();
    },
    onMessage: (message) => window.seen.messages.push(message),
    onDataMessage: (message) => window.seen.data.push(message),
    onError: (error) => window.seen.errors.push(String(error)),
  });
  // The SDK always dials Layercode's cloud; point it at this server instead.
  client._websocketUrl = `ws://${location.host}/v1/agents/web/websocket`;
  document.body.dataset.connectStartMs = performance.now();
  client.connect();
</script></body></html>"""


def with_official_sdk(app: Starlette) -> Starlette:
    """`app`, plus `/official.html` running the official SDK, on one origin."""

    async def official(request):
        return HTMLResponse(PAGE)

    return Starlette(
        routes=[
            Route("/official.html", official),
            Mount("/official", StaticFiles(directory=OFFICIAL_SDK.target)),
            Mount("/", app),
        ],
        lifespan=lambda _: app.router.lifespan_context(app),
    )
