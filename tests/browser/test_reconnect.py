"""Reconnect in real Chromium: the pipeline server killed mid-session and the next one serving
the same port; the demo page shows it reconnecting, comes back by itself with the same
conversation, and the next turn is answered (the agent's answer carries a `response.data`
naming what it heard). Every `response.data` the agent sent reaches the page once.

The server runs the app as `python -m server` does, killed with SIGTERM (a graceful restart: it
drains, the socket closes with 1012) or SIGKILL (a crash: the socket just dies, 1006). The next
process is ready on the same port before the kill (`WarmRestarts`, tests/support/restarts.py):
loading the speech models takes from 25 s to over a minute on a loaded 2-core machine, which
would test the machine's load against the client's attempt budget, not the reconnect (the
client's backoff while a server is away is unit-tested, tests/client/test_reconnect.py). The
microphone is Chromium's fake device playing silence, so the only turns are the typed ones.
Waits are for events on the page; how long reconnecting takes is bench/reconnect.py's figure.
"""

from __future__ import annotations

import json
import signal

import pytest

from tests.browser.conftest import PROBE, say, wait_reconnected
from tests.support.restarts import WarmRestarts

pytestmark = pytest.mark.browser

BACK_S = 120  # generous: the kill, the backoff, authorizing again, on a loaded machine
DATA_LINES = "() => [...document.querySelectorAll('#log li.data .text')].map(e => e.textContent)"


def wait_for_data(page, count: int) -> list[dict]:
    page.wait_for_function(f"() => ({DATA_LINES})().length >= {count}", timeout=BACK_S * 1000)
    return [json.loads(line) for line in page.evaluate(DATA_LINES)]


@pytest.mark.parametrize("kill", ["SIGTERM", "SIGKILL"])
def test_the_page_comes_back_after_a_server_restart_and_the_conversation_goes_on(
    quiet_browser, tmp_path, kill
):
    context = quiet_browser.new_context()
    context.add_init_script(PROBE)
    page = context.new_page()
    try:
        with WarmRestarts(tmp_path) as server:
            page.goto(server.url + "/")
            page.wait_for_selector("body[data-state=ready]", state="attached", timeout=120_000)
            page.click("#connect")
            page.wait_for_selector("#status[data-status=connected]", timeout=60_000)
            say(page, "hello one")
            (first,) = wait_for_data(page, 1)
            assert first["heard"] == "hello one"

            server.prepare_next()
            before = page.evaluate("window.__statuses.length")
            server.restart(getattr(signal, kill))
            wait_reconnected(page, before, BACK_S)

            say(page, "hello two")
            data = wait_for_data(page, 2)  # the answer to it
            logs = server.logs()
        heard = [d["heard"] for d in data]
        assert heard == ["hello one", "hello two"], heard  # none lost, none twice
        assert data[1]["turn"] == 2  # the same conversation: the agent saw the first turn
        assert page.evaluate("window.__microphoneRequests") == 1  # not asked again
        assert page.is_hidden("#error"), page.text_content("#error")
        assert "Traceback" not in logs
    finally:
        context.close()
