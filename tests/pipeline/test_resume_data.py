"""Every `response.data` reaches a client that reconnects, once: numbered as it goes out, kept
in the conversation's store (SQLite and PostgreSQL alike), sent again after the `seq` the
resumed client names (`client.resume`), and kept even when it was still queued as the
connection ended (a drain, a dropped network). docs/protocol.md, "Reconnecting"."""

from __future__ import annotations

import asyncio

from layercode_client.protocol import ResponseData, TurnStart
from server.pipeline.outbox import Outbox
from server.pipeline.store import SessionStore
from server.pipeline.stores import UnknownSession
from tests.support.aio import run
from tests.support.session_runner import SessionRunner, StreamingAgent


def test_data_messages_are_numbered_per_conversation_and_kept_within_bounds(open_history):
    async def scenario():
        store = await open_history(max_turns=3)
        a, b = await store.create("p", {}), await store.create("p", {})
        assert await store.last_data_seq(a) == 0 and await store.data_since(a, 0) == []
        seqs = [await store.append_data(a, {"n": n, "z": 0, "a": [1]}, f"t{n}") for n in range(5)]
        assert seqs == [1, 2, 3, 4, 5]
        assert await store.append_data(b, "other", None) == 1  # each conversation counts alone
        kept = await store.data_since(a, 1)
        assert [(r.seq, r.content, r.turn_id) for r in kept] == [  # the last 3 only, as sent
            (3, {"n": 2, "z": 0, "a": [1]}, "t2"),
            (4, {"n": 3, "z": 0, "a": [1]}, "t3"),
            (5, {"n": 4, "z": 0, "a": [1]}, "t4"),
        ]
        assert list(kept[0].content) == ["n", "z", "a"]  # key order kept: sent again verbatim
        assert [r.seq for r in await store.data_since(a, 4)] == [5]
        assert await store.last_data_seq(a) == 5
        other = await open_history(max_turns=3)  # another node on the same data
        assert await other.append_data(a, None, None) == 6
        assert await store.delete(a) and await store.data_since(a, 0) == []
        try:
            await store.append_data(a, {}, None)
        except UnknownSession:
            pass
        else:
            raise AssertionError("data kept for a deleted conversation")
        await other.close()
        await store.close()

    run(scenario())


def test_data_still_queued_when_the_connection_ends_is_kept(tmp_path):
    async def scenario():
        store = SessionStore(tmp_path / "sessions.sqlite3")
        session_id = await store.create("p", {})
        sending = asyncio.Event()

        async def slow_client(text: str) -> None:  # the first frame never finishes sending
            sending.set()
            await asyncio.Event().wait()

        async def number(message: ResponseData) -> None:
            message.seq = await store.append_data(session_id, message.content, message.turn_id)

        outbox = Outbox(slow_client, number=number)
        writer = asyncio.create_task(outbox.run())
        outbox.put(ResponseData(content={"n": 1}, turn_id="t1"))
        outbox.put(TurnStart(role="assistant", turn_id="t2"))
        outbox.put(ResponseData(content={"n": 2}, turn_id="t2"))
        await sending.wait()
        outbox.close()  # the connection ends (1012, a drop) with n=2 never handed to the socket
        await outbox.keep_unsent()
        writer.cancel()
        kept = await store.data_since(session_id, 0)
        await store.close()
        return [(r.seq, r.content) for r in kept]

    assert run(scenario()) == [(1, {"n": 1}), (2, {"n": 2})]


def test_a_resumed_connection_gets_the_missed_data_first_then_the_conversation_goes_on(tmp_path):
    agent = StreamingAgent(["Hello there."], interval_s=0.0)
    agent.data = {"step": "welcome"}

    async def scenario():
        async with SessionRunner(tmp_path, agent) as first:
            await first.send({"type": "client.ready"})
            welcome = await first.wait_for("response.data")
            agent.data = {"step": "answer"}
            await first.send({"type": "client.response.text", "content": "next please"})
            answer = await first.wait_for(
                "response.data", lambda m: m["content"]["step"] != "welcome"
            )
        # The client saw the welcome's data, then its network dropped before the answer's.
        assert (welcome.message["seq"], answer.message["seq"]) == (1, 2)
        agent.data = {"step": "welcome back"}
        async with SessionRunner(tmp_path, agent, session_id=first.session_id) as second:
            await second.send({"type": "client.resume", "last_data_seq": 1})
            await second.send({"type": "client.resume", "last_data_seq": 0})  # once only
            await second.send({"type": "client.ready"})
            fresh = await second.wait_for("response.data", lambda m: m["seq"] == 3)
            data = [s.message for s in second.sent if s.type == "response.data"]
            first_types = second.types()[:1]
        return data, fresh, first_types

    data, fresh, first_types = run(scenario())
    assert first_types == ["response.data"]  # before anything else of the connection
    assert data[0] == {"type": "response.data", "content": {"step": "answer"},
                       "turn_id": data[0]["turn_id"], "seq": 2}  # fmt: skip
    assert [m["seq"] for m in data] == [2, 3]  # sent again once, then numbered on
    assert fresh.message["content"] == {"step": "welcome back"}
