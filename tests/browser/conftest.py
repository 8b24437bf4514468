"""Browser tier: the real server on a real port, driven by Debian's Chromium via Playwright."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

from server.app import create_app
from server.config import Settings
from tests.support.layercode_cloud import StandIn
from tests.support.servers import serve

pytestmark = pytest.mark.browser


@contextlib.contextmanager
def running_app(*, wrap=None, **settings) -> Iterator[str]:
    """The full app on a free port; yields its base URL. `wrap` may wrap it in ASGI middleware."""
    app = create_app(Settings(**settings))
    with serve(wrap(app) if wrap else app) as url:
        yield url


def slow_wasm(app, seconds: float = 1.5):
    """Delay the Pyodide wasm download, as a slow network would: the page stays loading."""

    async def delayed(scope, receive, send):
        if scope["type"] == "http" and scope["path"].endswith(".wasm"):
            await asyncio.sleep(seconds)
        await app(scope, receive, send)

    return delayed


@pytest.fixture(scope="session")
def cloud() -> Iterator[StandIn]:
    standin = StandIn()
    with serve(standin.app()) as url:
        standin.url = url
        yield standin


@pytest.fixture
def cloud_settings(cloud) -> dict:
    cloud.mode = "ok"
    cloud.received.clear()
    return {
        "layercode_api_key": "lc_browser_test_key",
        "layercode_authorize_url": f"{cloud.url}/v1/pipelines/authorize_session",
    }


class RequestLog:
    """Every URL a page asked for, to prove nothing left the machine."""

    def __init__(self, page):
        self.urls: list[str] = []
        page.on("request", lambda request: self.urls.append(request.url))

    def outside(self, allowed_prefix: str = "http://127.0.0.1:") -> list[str]:
        return [u for u in self.urls if not u.startswith((allowed_prefix, "data:", "blob:"))]


def wait_ready(page, timeout_ms: int = 60_000) -> None:
    page.wait_for_selector("body[data-state=ready]", timeout=timeout_ms)
