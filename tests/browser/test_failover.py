"""The browser client fails over between nodes: the demo page in real Chromium, served through
a real HAProxy in front of two pipeline nodes on a real Redis and PostgreSQL
(tests/support/cluster.py), talking to a streaming agent.

The node serving the conversation is SIGKILLed while an answer plays. The page reconnects by
itself through the balancer, lands on the other node (HAProxy's `X-Served-By` on each
socket's handshake, read through the DevTools protocol), and the agent's next `message` there
carries the whole history: every turn stored before the kill, and the cut answer only as far
as the browser played it (tests/support/failover.py). The voice-client version of this
scenario is tests/pipeline/test_multinode.py; this one proves the browser client's own
reconnect (layercode_client) does it, with its real player reporting what was heard.
"""

from __future__ import annotations

import pytest

from tests.browser.conftest import PROBE, say, wait_reconnected
from tests.support.aio import run
from tests.support.cluster import WEBHOOK_SECRET, cluster
from tests.support.failover import (
    STORY,
    check_history_after_kill,
    heard_in_full,
    heard_in_part,
    wait_stored,
)
from tests.support.servers import serve
from tests.support.streaming_agent import PATH, StreamingAgentApp

pytestmark = [pytest.mark.browser, pytest.mark.multinode]

WAIT_S = 120  # s; generous bounds on events, on a loaded machine: loading, playing, failing over
WAIT_MS = WAIT_S * 1000


class ServedBy:
    """The node that answered each WebSocket handshake the page made, in order (HAProxy names
    it in `X-Served-By`; the page itself cannot read a socket's response headers)."""

    def __init__(self, context, page):
        self.nodes: list[str] = []
        devtools = context.new_cdp_session(page)
        devtools.on("Network.webSocketHandshakeResponseReceived", self._handshake)
        devtools.send("Network.enable")

    def _handshake(self, event: dict) -> None:
        headers = {k.lower(): v for k, v in event["response"]["headers"].items()}
        self.nodes.append(headers.get("x-served-by", "?"))


def test_the_page_fails_over_to_another_node_with_the_whole_history(
    quiet_browser, redis_engine, postgres_engine, tmp_path
):
    database = postgres_engine.create_database()
    agent = StreamingAgentApp(WEBHOOK_SECRET, sentences=STORY)
    context = quiet_browser.new_context()
    context.add_init_script(PROBE)
    page = context.new_page()
    served = ServedBy(context, page)
    try:
        with serve(agent.app) as agent_url, cluster(
            tmp_path, redis_url=redis_engine.url, database_url=database,
            env={"AGENT_WEBHOOK_URL": agent_url + PATH},
        ) as (balancer, nodes):  # fmt: skip
            page.goto(balancer.url + "/")
            page.wait_for_selector("body[data-state=ready]", state="attached", timeout=WAIT_MS)
            page.click("#connect")
            page.wait_for_selector("#status[data-status=connected]", timeout=WAIT_MS)
            welcome = agent.wait_for(lambda e: e["type"] == "session.start", "session.start")
            session_id = welcome["session_id"]

            say(page, "my name is Ada")  # the welcome stops at once
            whole = agent.wait_for_message("my name is Ada", WAIT_S)["turn_id"]
            run(wait_stored(database, session_id, heard_in_full(whole), "the answer played"))
            say(page, "tell me more")
            cut = agent.wait_for_message("tell me more", WAIT_S)["turn_id"]
            before_kill = run(
                wait_stored(database, session_id, heard_in_part(cut), "a sentence of the cut one")
            )

            victim = next(n for n in nodes if n.name == served.nodes[-1])
            before = page.evaluate("window.__statuses.length")
            victim.kill()
            wait_reconnected(page, before, WAIT_S)
            survivor = served.nodes[-1]
            say(page, "where was I?")
            asked = agent.wait_for_message("where was I?", WAIT_S)

        assert survivor != victim.name, served.nodes
        assert all(e["session_id"] == session_id for e in agent.events), "a new conversation"
        check_history_after_kill(
            asked["history"], before_kill, full="my name is Ada", cut="tell me more"
        )
        assert page.evaluate("window.__microphoneRequests") == 1  # not asked again
        assert page.is_hidden("#error"), page.text_content("#error")
    finally:
        context.close()
