"""Reconnect in real Chromium: the pipeline server killed mid-session and started again on the
same port; the demo page shows it reconnecting, comes back by itself with the same conversation,
and the next turn is answered. Every `response.data` the agent sent reaches the page once.

The server is `python -m server` as users run it (tests/support/restarts.py), killed with
SIGTERM (a graceful restart: the socket closes with 1012) or SIGKILL (a crash: the socket just
dies, 1006). The microphone is Chromium's fake device playing silence, so the only turns are
the typed ones. Waits are for events on the page, with generous timeouts: the restart loads
the speech models again; how long reconnecting takes is bench/reconnect.py's figure.
"""

from __future__ import annotations

import json
import signal

import pytest

from tests.conftest import chromium_launch_args
from tests.support.restarts import RestartingServer
from tests.support.speech import silence, write_wav

pytestmark = pytest.mark.browser

COUNTS_MEDIA = """
window.__microphoneRequests = 0;
const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = (c) => { window.__microphoneRequests += 1; return gum(c); };
"""
BACK_S = 300  # a restart loads the models again, on a loaded machine: generous
DATA_LINES = "() => [...document.querySelectorAll('#log li.data .text')].map(e => e.textContent)"


@pytest.fixture(scope="module")
def quiet_browser(playwright, tmp_path_factory):
    wav = write_wav(tmp_path_factory.mktemp("mic") / "silence.wav", silence(2.0), 16000)
    browser = playwright.chromium.launch(**chromium_launch_args(wav=wav))
    yield browser
    browser.close()


def say(page, text: str) -> None:
    page.fill("#say-text", text)
    page.click("#say-send")


def wait_for_data(page, count: int) -> list[dict]:
    page.wait_for_function(f"() => ({DATA_LINES})().length >= {count}", timeout=BACK_S * 1000)
    return [json.loads(line) for line in page.evaluate(DATA_LINES)]


@pytest.mark.parametrize("kill", ["SIGTERM", "SIGKILL"])
def test_the_page_comes_back_after_a_server_restart_and_the_conversation_goes_on(
    quiet_browser, tmp_path, kill
):
    context = quiet_browser.new_context()
    context.add_init_script(COUNTS_MEDIA)
    page = context.new_page()
    try:
        with RestartingServer(tmp_path) as server:
            page.goto(server.url + "/")
            page.wait_for_selector("body[data-state=ready]", state="attached", timeout=120_000)
            page.click("#connect")
            page.wait_for_selector("#status[data-status=connected]", timeout=60_000)
            say(page, "hello one")
            (first,) = wait_for_data(page, 1)
            assert first["heard"] == "hello one"

            server.kill(getattr(signal, kill))
            page.wait_for_selector("#status[data-status=reconnecting]", timeout=60_000)
            assert "Reconnecting" in page.text_content("#status")
            server.start()
            page.wait_for_selector("#status[data-status=connected]", timeout=BACK_S * 1000)
            page.wait_for_selector("#log li.system:has-text('reconnected')", state="attached")

            say(page, "hello two")
            data = wait_for_data(page, 2)
            page.wait_for_selector("#log li.agent >> nth=1", state="attached")  # answered
            logs = server.logs()
        heard = [d["heard"] for d in data]
        assert heard == ["hello one", "hello two"], heard  # none lost, none twice
        assert data[1]["turn"] == 2  # the same conversation: the agent saw the first turn
        assert page.evaluate("window.__microphoneRequests") == 1  # not asked again
        assert page.is_hidden("#error"), page.text_content("#error")
        assert "Traceback" not in logs
    finally:
        context.close()
