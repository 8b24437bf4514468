"""Browser tier: the real server on a real port, driven by Debian's Chromium via Playwright."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

from layercode_client.options import CHUNK_MS_ON
from server.app import create_app
from server.config import Settings
from tests.conftest import chromium_launch_args
from tests.support.layercode_cloud import StandIn
from tests.support.servers import serve
from tests.support.speech import silence, write_wav

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


# Counts microphone requests, and keeps every status the page showed (it may be connected
# again before the killed process has finished exiting).
PROBE = """
window.__microphoneRequests = 0;
const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = (c) => { window.__microphoneRequests += 1; return gum(c); };
window.__statuses = [];
new MutationObserver(() => {
  const pill = document.getElementById("status");
  if (pill && pill.dataset.status !== window.__statuses[window.__statuses.length - 1]) {
    window.__statuses.push(pill.dataset.status);
  }
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["data-status"]});
"""


@pytest.fixture(scope="module")
def quiet_browser(playwright, tmp_path_factory):
    """Chromium whose microphone hears silence: the only turns are the typed ones."""
    wav = write_wav(tmp_path_factory.mktemp("mic") / "silence.wav", silence(2.0), 16000)
    browser = playwright.chromium.launch(**chromium_launch_args(wav=wav))
    yield browser
    browser.close()


def say(page, text: str) -> None:
    page.fill("#say-text", text)
    page.click("#say-send")


def wait_reconnected(page, before: int, timeout_s: float) -> None:
    """The page (with `PROBE`) went from `reconnecting` back to `connected`, never through
    `error`, since it had shown `before` statuses, and logged that it reconnected.

    (Connected once more, after reconnecting: a socket that reached a draining process as it
    stopped is closed with 1012 and the client comes back once more.)"""
    page.wait_for_function(
        f"""() => {{ const seen = window.__statuses.slice({before});
          return seen[0] === "reconnecting" && seen[seen.length - 1] === "connected"
            && !seen.includes("error"); }}""",
        timeout=timeout_s * 1000,
    )
    page.wait_for_selector(
        "#log li.system:has-text('reconnected')", state="attached", timeout=10_000
    )


def default_chunk_ms(interpreter: str) -> int:
    """The microphone chunk (ms) the page streams by default on `interpreter` (options.py)."""
    return CHUNK_MS_ON.get(interpreter, CHUNK_MS_ON["other"])
