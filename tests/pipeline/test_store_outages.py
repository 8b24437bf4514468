"""Stores that go away: every call fails at once with a clear `StoreUnavailable` (authorize
503 with a JSON reason, `/health` 503, the WebSocket 1013), nothing crashes, and the same
clients work again when the servers come back — no restart of the node."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import redis.asyncio as redis_asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from layercode_client.protocol import CloseCode, SessionConfig
from server.app import create_app
from server.config import Settings
from server.pipeline import session_bus, store_postgres
from server.pipeline.keys import SessionGrant
from server.pipeline.keys_redis import RedisKeys
from server.pipeline.session_bus import SessionBus
from server.pipeline.store_postgres import PostgresStore
from server.pipeline.stores import StoreUnavailable
from tests.pipeline.test_conversation import pipeline_server
from tests.support.aio import run
from tests.support.engines import postgres_server, redis_server
from tests.support.failover import heard_in_full, stored_turns, wait_stored
from tests.support.servers import serve
from tests.support.streaming_agent import PATH, StreamingAgentApp
from tests.support.voice_client import VoiceClient

SECRET = "outage-test-secret"


@pytest.fixture
def redis_engine_to_stop():
    with redis_server() as server:
        yield server


@pytest.fixture
def postgres_engine_to_stop():
    with postgres_server() as server:
        yield server


def a_grant() -> SessionGrant:
    return SessionGrant(session_id="sess_o", pipeline_id="p", config=SessionConfig())


def test_redis_keys_fail_clearly_while_redis_is_down_and_recover(redis_engine_to_stop):
    redis = redis_engine_to_stop

    async def while_down(keys):
        for call in (keys.ping(), keys.issue(a_grant()), keys.redeem("lcsk_anything")):
            with pytest.raises(StoreUnavailable) as down:
                await call
            assert down.value.store == "session keys" and "Redis" in down.value.message

    async def scenario():
        keys = await RedisKeys.open(redis.url)
        await keys.issue(a_grant())
        redis.stop()
        await while_down(keys)
        redis.start()
        assert (await keys.redeem(await keys.issue(a_grant()))).session_id == "sess_o"
        await keys.close()

    run(scenario())
    redis.stop()
    with pytest.raises(StoreUnavailable):
        run(RedisKeys.open(redis.url))  # a node cannot start on a Redis it cannot reach


def test_postgres_history_fails_clearly_while_postgres_is_down_and_recovers(
    postgres_engine_to_stop,
):
    postgres = postgres_engine_to_stop

    async def scenario():
        store = await PostgresStore.open(postgres.url())
        session_id = await store.create("p", {})
        await store.append(session_id, "user", "before the outage")
        postgres.stop()
        calls = (
            store.ping(),
            store.exists(session_id),
            store.append(session_id, "user", "lost?"),
            store.history(session_id),
            store.create("p", {}),
        )
        for call in calls:
            with pytest.raises(StoreUnavailable) as down:
                await call
            assert down.value.store == "history" and "PostgreSQL" in down.value.message
        postgres.start()
        await store.append(session_id, "user", "after the outage")
        texts = [t.text for t in await store.history(session_id)]
        assert texts == ["before the outage", "after the outage"]
        await store.close()

    run(scenario())
    postgres.stop()
    with pytest.raises(StoreUnavailable):
        run(PostgresStore.open(postgres.url()))


def test_the_history_store_closes_though_a_connection_never_came_back(
    postgres_engine_to_stop, monkeypatch
):
    """A checkout cancelled at the wrong moment (a health check cut short during an outage)
    can leave a connection that is never returned; asyncpg's graceful close waits for it for
    ever, so a node that lived through an outage could not shut down (seen once in CI)."""
    monkeypatch.setattr(store_postgres, "CLOSE_TIMEOUT_S", 0.2)

    async def scenario():
        store = await PostgresStore.open(postgres_engine_to_stop.url())
        await store.pool.acquire()  # never released
        await asyncio.wait_for(store.close(), 30)  # hangs on a close that is not bounded
        return store.pool

    pool = run(scenario())
    assert pool.is_closing() and pool.get_size() == 0  # every connection dropped


class SubscriptionThatTurnsCancellationIntoAnError:
    """A pub/sub whose `listen()` waits for ever and, cancelled, raises a connection error
    instead — what redis-py has done while a read was cut short (its issue #2028)."""

    def __init__(self):
        self.subscriptions = 0

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return False

    async def subscribe(self, channel):
        self.subscriptions += 1

    async def listen(self):
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if self.subscriptions > 1:  # only the first time, so a test on a hang can end
                raise
            raise RedisConnectionError("Connection closed by server.") from None
        yield {}  # an async generator, as redis-py's


def test_the_session_bus_closes_though_its_client_swallows_the_cancellation(monkeypatch):
    """Closing a node's bus must end its listener even if the cancellation comes back as a
    connection error: the listener would take it for a lost Redis and subscribe again."""
    monkeypatch.setattr(session_bus, "RESUBSCRIBE_BACKOFF_S", 0.01)
    subscription = SubscriptionThatTurnsCancellationIntoAnError()

    async def scenario():
        unused = redis_asyncio.Redis.from_url("redis://127.0.0.1:1")  # never connected
        bus = SessionBus(unused, unused, connections=None)
        bus.listener = type("Listener", (), {"pubsub": lambda self, **_: subscription,
                                             "aclose": unused.aclose})()  # fmt: skip
        bus._task = asyncio.create_task(bus._listen())
        await bus._subscribed.wait()
        await asyncio.wait_for(bus.close(), 10)  # waited on a listener that subscribed again
        return bus._task

    listener = run(scenario())
    assert listener.done() and subscription.subscriptions == 1


def test_a_node_answers_503_with_reasons_while_a_store_is_down_and_recovers(
    tmp_path, redis_engine_to_stop, postgres_engine_to_stop
):
    redis, postgres = redis_engine_to_stop, postgres_engine_to_stop
    settings = Settings(
        data_dir=tmp_path,
        tts_engine="espeak",
        redis_url=redis.url,
        database_url=postgres.url(),
        agent_webhook_secret="shared-secret",
        allowed_hosts=("testserver",),  # TestClient's Host
    )
    body = {"pipeline_id": "p"}
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        health = client.get("/health")
        assert health.status_code == 200, health.text
        assert health.json()["stores"] == {"session_keys": "redis", "history": "postgresql"}
        key = client.post("/api/authorize", json=body).json()["client_session_key"]

        redis.stop()
        refused = client.post("/api/authorize", json=body)
        assert refused.status_code == 503
        assert "try again" in refused.json()["error"] and "Redis" in refused.json()["error"]
        health = client.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "unavailable"
        assert "session keys" in health.json()["reason"]
        with (
            pytest.raises(WebSocketDisconnect) as closed,
            client.websocket_connect(f"/v1/pipelines/websocket?client_session_key={key}") as ws,
        ):
            ws.receive_text()
        assert closed.value.code == CloseCode.TRY_AGAIN_LATER
        redis.start()
        assert client.get("/health").status_code == 200
        started = client.post("/api/authorize", json=body).json()
        deletion = (
            f"/api/conversations/{started['session_id']}",
            {"x-resume-token": started["resume_token"]},
        )

        postgres.stop()
        refused = client.post("/api/authorize", json=body)
        assert refused.status_code == 503 and "PostgreSQL" in refused.json()["error"]
        refused = client.delete(deletion[0], headers=deletion[1])
        assert refused.status_code == 503 and refused.json()["code"] == "store_unavailable"
        health = client.get("/health")
        assert health.status_code == 503 and "history" in health.json()["reason"]
        postgres.start()
        assert client.get("/health").status_code == 200
        assert client.post("/api/authorize", json=body).status_code == 200
        assert client.delete(deletion[0], headers=deletion[1]).status_code == 204


def test_a_node_refuses_to_start_on_a_store_it_cannot_reach(tmp_path, redis_engine_to_stop):
    redis_engine_to_stop.stop()
    settings = Settings(
        data_dir=tmp_path,
        tts_engine="espeak",
        redis_url=redis_engine_to_stop.url,
        agent_webhook_secret="shared-secret",
    )
    with (
        pytest.raises(StoreUnavailable, match="Redis"),
        TestClient(create_app(settings)),
    ):
        pass


@contextlib.contextmanager
def on_postgres_with_agent(tmp_path, database: str, agent, history_retry_s: float):
    """A pipeline server keeping history in `database`, answered by the streaming `agent`."""
    with (
        serve(agent.app) as agent_url,
        pipeline_server(
            tmp_path,
            database_url=database,
            agent_webhook_url=agent_url + PATH,
            agent_webhook_secret=SECRET,
            tts_engine="espeak",
            history_retry_s=history_retry_s,
        ) as url,
    ):
        yield url


def test_a_session_goes_on_while_postgres_is_down_and_its_turns_are_stored_when_it_returns(
    tmp_path, postgres_engine_to_stop
):
    """PostgreSQL stops mid-session: the next turn's history write fails. The client gets an
    `error` (`history_unavailable`) and the conversation goes on — the agent is asked, with the
    history as this session knows it, and its answer plays. When PostgreSQL is back, the
    turns said meanwhile are stored, in order, before the next one, and the client gets a
    `notice` (`history_stored`) that ends the error."""
    postgres = postgres_engine_to_stop
    database = postgres.create_database()
    agent = StreamingAgentApp(SECRET, sentences=["Noted.", "Go on."], interval_s=0.1)

    async def say(client: VoiceClient, text: str) -> str:
        mark = len(client.received)
        await client.send({"type": "client.response.text", "content": text})
        start = await client.wait_for(
            "turn.start", lambda m: m["role"] == "assistant", after=mark, timeout=60
        )
        await client.finish_playback(start.message["turn_id"], timeout=60)
        return start.message["turn_id"]

    async def scenario(url: str):
        async with VoiceClient(url) as client:
            await client.connect()
            await client.wait_for("turn.start", lambda m: m["role"] == "assistant")  # welcome
            heard = await say(client, "my name is Ada")
            await wait_stored(database, client.session_id, heard_in_full(heard), "the answer")
            mark = len(client.received)
            await asyncio.to_thread(postgres.stop)
            away = await say(client, "I live in Paris")  # answered while the store is down
            error = await client.wait_for("error", after=mark)
            await asyncio.to_thread(postgres.start)
            await say(client, "what do you know?")
            notice = await client.wait_for("notice", after=mark)
            assert client.close_code is None
            return client.session_id, away, error.message, notice.message

    # history_retry_s 0: the turn after the restart tries the store again
    with on_postgres_with_agent(tmp_path, database, agent, history_retry_s=0) as url:
        session_id, away, error, notice = run(scenario(url))

    assert error["code"] == "history_unavailable", error
    assert notice["code"] == "history_stored" and notice["resolves"] == error["code"], notice
    assert "PostgreSQL" in error["message"] and "goes on" in error["message"], error
    asked = {m["text"]: m["history"] for m in agent.messages()}
    users = lambda history: [t["text"] for t in history if t["role"] == "user"]  # noqa: E731
    assert users(asked["I live in Paris"]) == ["my name is Ada"]  # read while it was down
    after = asked["what do you know?"]
    assert users(after) == ["my name is Ada", "I live in Paris"], after
    assert {"role": "assistant", "text": "Noted. Go on."} in after, after
    stored = run(stored_turns(database, session_id))
    assert [t["text"] for t in stored if t["role"] == "user"] == [
        "my name is Ada", "I live in Paris", "what do you know?"
    ], stored  # fmt: skip
    answer = next(t for t in stored if t["turn_id"] == away and t["role"] == "assistant")
    assert answer["text"] == "Noted. Go on." and not answer["interrupted"], stored


def test_turns_kept_while_postgres_was_down_are_stored_though_the_session_says_nothing_more(
    tmp_path, postgres_engine_to_stop
):
    """The store comes back while the user only listens: the turns kept during the outage are
    stored, and the client's error resolved, within `HISTORY_RETRY_SECONDS`, without waiting
    for another turn (which may never come)."""
    postgres = postgres_engine_to_stop
    database = postgres.create_database()
    agent = StreamingAgentApp(SECRET, sentences=["Noted."], interval_s=0.1)

    async def scenario(url: str):
        async with VoiceClient(url) as client:
            await client.connect()
            await client.wait_for("turn.start", lambda m: m["role"] == "assistant")  # welcome
            mark = len(client.received)
            await asyncio.to_thread(postgres.stop)
            await client.send({"type": "client.response.text", "content": "I live in Paris"})
            error = await client.wait_for("error", after=mark, timeout=60)
            start = await client.wait_for(
                "turn.start", lambda m: m["role"] == "assistant", after=mark, timeout=60
            )
            await client.finish_playback(start.message["turn_id"], timeout=60)  # heard: kept
            await asyncio.to_thread(postgres.start)
            notice = await client.wait_for("notice", after=mark, timeout=60)  # no turn since
            stored = await stored_turns(database, client.session_id)
            return error.message, notice.message, stored

    # history_retry_s 5: what the answer writes meanwhile is kept without a call
    with on_postgres_with_agent(tmp_path, database, agent, history_retry_s=5) as url:
        error, notice, stored = run(scenario(url))

    assert error["code"] == "history_unavailable", error
    assert notice["code"] == "history_stored" and notice["resolves"] == error["code"], notice
    assert "I live in Paris" in [t["text"] for t in stored if t["role"] == "user"], stored
