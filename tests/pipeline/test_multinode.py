"""Two real pipeline nodes behind a real HAProxy, sharing a real Redis and PostgreSQL: a key
issued by one node is redeemed once on any node, a conversation continues on either (its
resume token, issued by one node, accepted by the other), it survives the death of the node
that served it — an answer the crash cut off kept only as far as it was heard —, and a
draining node hands its caller over to the other one."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import websockets

from layercode_client.protocol import CloseCode
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
from tests.support.voice_client import VoiceClient

pytestmark = pytest.mark.multinode


@pytest.fixture(scope="module")
def nodes(redis_engine, postgres_engine, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cluster")
    database = postgres_engine.create_database()
    # The rate limit trusts the balancer's (and the tests') X-Forwarded-For from this host.
    env = {"TRUSTED_PROXIES": "127.0.0.1", "AUTHORIZE_RATE_LIMIT": str(RATE_LIMIT)}
    with cluster(folder, redis_url=redis_engine.url, database_url=database, env=env) as running:
        yield running


RATE_LIMIT = 40  # a minute; the module's other tests stay under it from 127.0.0.1


def on_node(websocket_url: str, node) -> str:
    """The same WebSocket URL, on `node`'s own port instead of the one that issued it."""
    path = websocket_url.split("/", 3)[3]
    return f"ws://127.0.0.1:{node.port}/{path}"


async def first_reply(url: str) -> tuple[str, dict]:
    """Open the socket, say ready, and return the node that served it and the first message
    (or the close code and reason). A refused key may be closed before the ready is sent
    (CI saw the send raise with the 4002 already received): the close is the reply then."""
    async with websockets.connect(url) as socket:
        served_by = socket.response.headers.get("x-served-by", "")
        try:
            await socket.send('{"type": "client.ready"}')
            return served_by, {"frame": await socket.recv()}
        except websockets.ConnectionClosed as closed:
            return served_by, {"code": closed.rcvd.code, "reason": closed.rcvd.reason}


def test_a_key_issued_by_one_node_is_redeemed_once_on_another(nodes):
    _, (node_a, node_b) = nodes

    async def scenario():
        auth = await VoiceClient(node_a.url).authorize()
        url = f"{auth['websocket_url']}?client_session_key={auth['client_session_key']}"
        _, on_b = await first_reply(on_node(url, node_b))
        assert "frame" in on_b  # node B knew node A's key
        _, again_on_a = await first_reply(url)
        assert again_on_a["code"] == CloseCode.SESSION_KEY_USED
        assert "already used" in again_on_a["reason"]

    run(scenario())


def test_through_the_balancer_authorize_and_socket_land_on_different_nodes(nodes):
    balancer, _ = nodes

    async def scenario():
        async with httpx.AsyncClient() as http:
            response = await http.post(f"{balancer.url}/api/authorize", json={"pipeline_id": "p"})
        response.raise_for_status()
        auth = response.json()
        # PUBLIC_URL: whichever node answered, the socket goes through the balancer
        assert auth["websocket_url"].startswith(f"ws://127.0.0.1:{balancer.port}/")
        url = f"{auth['websocket_url']}?client_session_key={auth['client_session_key']}"
        served_by, reply = await first_reply(url)
        assert "frame" in reply, reply
        return response.headers["x-served-by"], served_by

    authorized_on, connected_on = run(scenario())
    assert {authorized_on, connected_on} == {"nodea", "nodeb"}  # round robin: one each


def test_the_authorize_rate_limit_counts_a_caller_on_every_node(nodes):
    """One budget per caller for the cluster: half of it spent on each node, the next request
    is refused on either (per node, each would still have half its budget left)."""
    _, (node_a, node_b) = nodes
    caller = {"x-forwarded-for": "203.0.113.9"}

    async def scenario():
        async with httpx.AsyncClient() as http:
            for n in range(RATE_LIMIT):
                node = (node_a, node_b)[n % 2]
                response = await http.post(
                    f"{node.url}/api/authorize", json={"pipeline_id": "p"}, headers=caller
                )
                assert response.status_code == 200, (n, response.text)
            return [
                await http.post(f"{node.url}/api/authorize", json={"pipeline_id": "p"},
                                headers=caller)
                for node in (node_a, node_b)
            ]  # fmt: skip

    for refused in run(scenario()):
        assert refused.status_code == 429, refused.text
        assert refused.json()["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1


async def live_on(node, session_id: str | None = None, resume_token: str | None = None):
    """A client connected straight to `node` whose session has started (the welcome began)."""
    client = VoiceClient(node.url, session_id=session_id, resume_token=resume_token)
    await client.connect()
    await client.wait_for("turn.start", lambda m: m["role"] == "assistant")
    return client


def test_a_second_socket_on_another_node_replaces_the_first(nodes):
    """One live socket per session across nodes: the owner resuming on node B closes its older
    socket on node A with 4011 (as on one node), and is served on B."""
    _, (node_a, node_b) = nodes

    async def scenario():
        first = await live_on(node_a)
        second = await live_on(node_b, first.session_id, first.resume_token)
        code, reason = await first.wait_closed()
        assert code == CloseCode.SESSION_REPLACED, (code, reason)
        assert second.close_code is None
        await second.close()

    run(scenario())


def test_deleting_a_conversation_on_one_node_closes_its_socket_on_another(nodes):
    _, (node_a, node_b) = nodes

    async def scenario():
        client = await live_on(node_a)
        async with httpx.AsyncClient() as http:
            deleted = await http.delete(
                f"{node_b.url}/api/conversations/{client.session_id}",
                headers={"x-resume-token": client.resume_token},
            )
        assert deleted.status_code == 204, deleted.text
        code, reason = await client.wait_closed()
        assert code == CloseCode.CONVERSATION_DELETED, (code, reason)

    run(scenario())


async def introduce_ada(url: str) -> VoiceClient:
    """A new conversation at `url` in which the user gave a name; the client stays connected."""
    client = VoiceClient(url)
    await client.connect()
    mark = len(client.received)
    await client.send({"type": "client.response.text", "content": "my name is Ada"})
    await client.wait_for("user.transcript", after=mark)
    await client.wait_for("response.end", after=mark)
    return client


async def welcome_back(url: str, session_id: str, resume_token: str) -> dict:
    """Resume the conversation at `url` with its token: the agent's greeting, the nodes that
    authorized and served it, and the token to use next."""
    async with VoiceClient(url, session_id=session_id, resume_token=resume_token) as client:
        await client.connect()
        assert client.session_id == session_id
        start = await client.wait_for("turn.start", lambda m: m["role"] == "assistant")
        turn_id = start.message["turn_id"]
        await client.wait_for("response.end", lambda m: m["turn_id"] == turn_id)
        return {
            "welcome": " ".join(m["content"] for m in client.of_type("response.text")).lower(),
            "authorized_on": client.authorize_headers.get("x-served-by"),
            "served_on": client._socket.response.headers.get("x-served-by"),
            "resume_token": client.resume_token,
        }


def served_by(client: VoiceClient) -> str:
    return client._socket.response.headers["x-served-by"]


def test_a_conversation_continues_on_either_node(nodes):
    balancer, node_list = nodes

    async def first_visit():
        async with await introduce_ada(balancer.url) as client:
            return client.session_id, client.resume_token

    session_id, token = run(first_visit())
    for node in node_list:  # each node accepts the token the other one issued last
        back = run(welcome_back(node.url, session_id, token))
        assert "welcome back" in back["welcome"] and "ada" in back["welcome"], (node.name, back)
        token = back["resume_token"]


def test_a_resume_token_is_required_on_every_node(nodes):
    balancer, node_list = nodes

    async def scenario():
        auth = await VoiceClient(balancer.url).authorize()
        async with httpx.AsyncClient() as http:
            for node in node_list:
                body = {"pipeline_id": "p", "session_id": auth["session_id"]}
                refused = await http.post(f"{node.url}/api/authorize", json=body)
                assert refused.status_code == 403, refused.text
                assert refused.json()["code"] == "resume_token_required"

    run(scenario())


def test_a_conversation_survives_the_death_of_its_node(redis_engine, postgres_engine, tmp_path):
    """Node killed (SIGKILL, as a crash) after a stored turn: the client authorizes again
    through the balancer, lands on the surviving node, and the agent has the whole history."""
    database = postgres_engine.create_database()

    async def scenario(balancer, nodes):
        client = await introduce_ada(balancer.url)
        first_node = served_by(client)
        victim = next(n for n in nodes if n.name == first_node)
        await asyncio.to_thread(victim.kill)
        code, _ = await client.wait_closed()
        assert code != CloseCode.NORMAL  # the node died; it did not say goodbye
        back = await welcome_back(balancer.url, client.session_id, client.resume_token)
        return first_node, back

    with cluster(tmp_path, redis_url=redis_engine.url, database_url=database) as (balancer, nodes):
        first_node, back = run(scenario(balancer, nodes))
    assert back["served_on"] != first_node
    assert "welcome back" in back["welcome"] and "ada" in back["welcome"], back


def test_a_draining_node_hands_its_caller_to_the_other_node(
    redis_engine, postgres_engine, tmp_path
):
    """SIGTERM to the node serving a conversation: its /health turns 503 and HAProxy takes it
    out of rotation while the session is still served; the socket then closes with 1012, and
    the client authorizes again through the balancer with its resume token, lands on the other
    node and the agent has the whole history."""
    database = postgres_engine.create_database()
    grace = {"DRAIN_GRACE": "5"}  # long enough for HAProxy's checks (2 x 300 ms) to see it

    async def scenario(balancer, nodes):
        client = await introduce_ada(balancer.url)
        draining = next(n for n in nodes if n.name == served_by(client))
        other = next(n for n in nodes if n is not draining)
        draining.terminate()
        await asyncio.to_thread(balancer.wait_for_states, {draining.name: "DOWN", other.name: "UP"})
        assert client.close_code is None  # out of rotation, still serving its session
        code, reason = await client.wait_closed(timeout=30)
        assert code == CloseCode.SERVICE_RESTART, (code, reason)
        back = await welcome_back(balancer.url, client.session_id, client.resume_token)
        return draining.name, back

    with cluster(tmp_path, redis_url=redis_engine.url, database_url=database, env=grace) as (
        balancer,
        nodes,
    ):
        drained, back = run(scenario(balancer, nodes))
    assert back["authorized_on"] != drained and back["served_on"] != drained, back
    assert "welcome back" in back["welcome"] and "ada" in back["welcome"], back


async def say(client: VoiceClient, text: str) -> str:
    """Type `text` (it interrupts whatever the agent is saying); the turn id of the answer."""
    mark = len(client.received)
    await client.send({"type": "client.response.text", "content": text})
    start = await client.wait_for(
        "turn.start", lambda m: m["role"] == "assistant", after=mark, timeout=60
    )
    return start.message["turn_id"]


def test_an_answer_cut_by_the_death_of_its_node_is_kept_as_far_as_it_was_heard(
    redis_engine, postgres_engine, tmp_path
):
    """A streaming agent is mid-answer when the node serving the conversation is killed
    (SIGKILL: nothing runs on it after that). The client resumes through the balancer on the
    other node, and the agent's next `message` there carries every turn stored before the
    kill — the user's words, the answer heard to its end — and the cut answer only as far as
    it was heard (whole sentences, marked interrupted), never as fully said."""
    database = postgres_engine.create_database()
    agent = StreamingAgentApp(WEBHOOK_SECRET, sentences=STORY)

    async def scenario(balancer, nodes) -> tuple[dict, list[dict]]:
        client = VoiceClient(balancer.url)
        await client.connect()
        session_id = client.session_id
        await client.wait_for("turn.start", lambda m: m["role"] == "assistant")  # the welcome
        whole = await say(client, "my name is Ada")  # the welcome stops at once
        await client.finish_playback(whole, timeout=60)  # the player played it all
        await wait_stored(
            database, session_id, heard_in_full(whole), "the first answer, heard in full"
        )
        cut = await say(client, "tell me more")
        before_kill = await wait_stored(
            database, session_id, heard_in_part(cut), "the first heard sentence of the cut answer"
        )
        victim = next(n for n in nodes if n.name == served_by(client))
        await asyncio.to_thread(victim.kill)
        await client.wait_closed()
        async with VoiceClient(
            balancer.url, session_id=session_id, resume_token=client.resume_token
        ) as again:
            await again.connect()
            assert served_by(again) != victim.name
            await again.wait_for("turn.start", lambda m: m["role"] == "assistant")  # welcome
            mark = len(again.received)
            answer = await say(again, "where was I?")
            # the agent's first words: it has the message (and its history)
            await again.wait_for(
                "response.text", lambda m: m["turn_id"] == answer, after=mark, timeout=60
            )
        asked = next(m for m in agent.messages() if m.get("text") == "where was I?")
        return before_kill, asked["history"]

    with serve(agent.app) as agent_url, cluster(
        tmp_path, redis_url=redis_engine.url, database_url=database,
        env={"AGENT_WEBHOOK_URL": agent_url + PATH},
    ) as (balancer, nodes):  # fmt: skip
        before_kill, history = run(scenario(balancer, nodes))

    check_history_after_kill(history, before_kill, full="my name is Ada", cut="tell me more")
