"""Conversation history: the same contract on SQLite and PostgreSQL — order, concurrency,
separation, deletion, retention (turn cap, age pruning), resume-token digests seen by every
node — plus what each backend promises of its own (SQLite survives reopening the file and
upgrades an old one; PostgreSQL migrates its schema once, whoever starts first, old data kept)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import asyncpg
import pytest

from server.pipeline import store_postgres
from server.pipeline.keys import issue_resume_token, resume_token_valid, token_digest
from server.pipeline.store import SCHEMA, SessionStore
from server.pipeline.store_postgres import MIGRATIONS, PostgresStore, migrate
from server.pipeline.stores import UnknownSession
from tests.support.aio import run


def test_sessions_and_turns_round_trip(open_history):
    async def scenario():
        store = await open_history()
        session_id = await store.create("pl_1", {"userId": "7"})
        assert session_id.startswith("sess_")
        assert await store.exists(session_id)
        assert not await store.exists("sess_other")
        assert await store.history(session_id) == []
        await store.append(session_id, "user", "what time is it", "t1")
        await store.append(session_id, "assistant", "It is noon.", "t2")
        history = await store.history(session_id)
        assert [(t.role, t.text, t.turn_id) for t in history] == [
            ("user", "what time is it", "t1"),
            ("assistant", "It is noon.", "t2"),
        ]
        assert history[0].to_dict() == {"role": "user", "text": "what time is it"}
        assert await store.create("p", {}, session_id="sess_given") == "sess_given"
        await store.close()

    run(scenario())


def test_history_limit_keeps_the_latest_turns_in_order(open_history):
    async def scenario():
        store = await open_history()
        session_id = await store.create("p", {})
        for n in range(10):
            await store.append(session_id, "user", f"turn {n}")
        assert [t.text for t in await store.history(session_id, limit=3)] == [
            "turn 7",
            "turn 8",
            "turn 9",
        ]
        await store.close()

    run(scenario())


def test_sessions_are_separate_and_deletable(open_history):
    async def scenario():
        store = await open_history()
        a, b = await store.create("p", {}), await store.create("p", {})
        assert a != b
        await store.append(a, "user", "hello")
        await store.append(b, "user", "other")
        assert [t.text for t in await store.history(a)] == ["hello"]
        assert await store.delete(a)
        assert not await store.exists(a) and await store.history(a) == []
        assert not await store.delete(a)
        assert [t.text for t in await store.history(b)] == ["other"]
        with pytest.raises(UnknownSession):
            await store.append(a, "user", "after deletion")
        await store.close()

    run(scenario())


async def backdate(store, session_id: str, seconds: float) -> None:
    """Make a conversation look untouched for `seconds` longer than it has been."""
    if store.backend == "sqlite":
        sql = "UPDATE sessions SET updated_at = updated_at - ? WHERE id = ?"
        await store._run(store._db.execute, sql, (seconds, session_id))
    else:
        await store.pool.execute(
            "UPDATE sessions SET updated_at = updated_at - make_interval(secs => $2) WHERE id = $1",
            session_id,
            seconds,
        )


def test_each_conversation_keeps_only_its_last_turns(open_history):
    async def scenario():
        store = await open_history(max_turns=3)
        session_id, other = await store.create("pl", {}), await store.create("pl", {})
        for n in range(10):
            await store.append(session_id, "user", f"turn {n}")
        await store.append(other, "user", "kept")
        # limit=1000: pruned from the database, not just from what history() shows
        texts = [t.text for t in await store.history(session_id, limit=1000)]
        assert texts == ["turn 7", "turn 8", "turn 9"]
        assert [t.text for t in await store.history(other)] == ["kept"]
        await store.close()

    run(scenario())


def test_conversations_untouched_too_long_are_deleted_on_demand_and_at_open(open_history):
    async def scenario():
        store = await open_history(max_age_s=3600)
        stale, fresh = await store.create("pl", {}), await store.create("pl", {})
        await store.append(stale, "user", "old news")
        await backdate(store, stale, 7200)
        assert await store.prune() == 1
        assert not await store.exists(stale) and await store.exists(fresh)
        assert await store.history(stale) == []
        await backdate(store, fresh, 7200)
        await store.close()
        # Opening prunes too, so a node that restarts daily still forgets.
        reopened = await open_history(max_age_s=3600)
        assert not await reopened.exists(fresh)
        await reopened.close()

    run(scenario())


def test_resume_tokens_rotate_are_kept_as_digests_and_checked_on_any_node(open_history):
    async def scenario():
        node_a, node_b = await open_history(), await open_history()
        session_id = await node_a.create("pl", {})
        assert await node_a.resume_digest(session_id) is None
        first = await issue_resume_token(node_a, session_id)
        assert await resume_token_valid(node_b, session_id, first)
        assert await node_b.resume_digest(session_id) == token_digest(first)  # never the token
        assert not await resume_token_valid(node_b, "sess_other", first)
        assert not await resume_token_valid(node_b, session_id, None)
        assert not await resume_token_valid(node_b, session_id, first + "x")
        second = await issue_resume_token(node_b, session_id)
        assert await resume_token_valid(node_a, session_id, second)
        assert not await resume_token_valid(node_a, session_id, first)
        assert await node_a.delete(session_id)
        assert not await resume_token_valid(node_b, session_id, second)  # gone with the history
        await asyncio.gather(node_a.close(), node_b.close())

    run(scenario())


def test_concurrent_appends_from_two_nodes_all_land_in_each_nodes_order(open_history):
    async def scenario():
        node_a, node_b = await open_history(), await open_history()
        session_id = await node_a.create("p", {})

        async def talk(store, name):
            for n in range(25):
                await store.append(session_id, "user", f"{name}{n}")

        await asyncio.gather(talk(node_a, "a"), talk(node_b, "b"), talk(node_a, "c"))
        for store in (node_a, node_b):
            texts = [t.text for t in await store.history(session_id, limit=1000)]
            assert sorted(texts) == sorted(f"{w}{n}" for w in "abc" for n in range(25))
            for writer in "abc":  # each writer's turns in the order it wrote them
                mine = [t for t in texts if t[0] == writer]
                assert mine == [f"{writer}{n}" for n in range(25)]
        await asyncio.gather(node_a.close(), node_b.close())

    run(scenario())


def test_sqlite_history_survives_reopening(tmp_path):
    async def scenario():
        path = tmp_path / "data" / "sessions.sqlite3"
        store = SessionStore(path)
        session_id = await store.create("pl_1", {"userId": "7"})
        await store.append(session_id, "user", "what time is it", "t1")
        await store.close()
        reopened = SessionStore(path)
        assert [t.text for t in await reopened.history(session_id)] == ["what time is it"]
        await reopened.close()

    run(scenario())


def test_servers_opening_one_new_sqlite_file_at_once_all_open_it(tmp_path):
    """Two servers started together on one DATA_DIR (seen in CI): SQLite reports some lock
    conflicts of a first open at once, and both openers used to add the same columns. Four
    openers at a time (threads, each with its own connection: SQLite locks them as it locks
    processes), fifty times: before the fix about one round in three failed."""

    def open_at_once(path, count=4):
        start, opened, errors = threading.Barrier(count), [], []

        def opener():
            start.wait()
            try:
                opened.append(SessionStore(path))
            except sqlite3.Error as error:
                errors.append(error)

        threads = [threading.Thread(target=opener) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        async def close_all():
            await asyncio.gather(*(store.close() for store in opened))

        run(close_all())
        return errors

    failures = [open_at_once(tmp_path / f"round{n}" / "sessions.sqlite3") for n in range(50)]
    assert [errors for errors in failures if errors] == []


def test_sqlite_calls_leave_the_event_loop_free(tmp_path):
    """A stalled disk must not stall the loop: while the database thread is blocked, other
    coroutines keep running."""

    async def scenario():
        store = SessionStore(tmp_path / "s.sqlite3")
        session_id = await store.create("p", {})
        blocked, release = asyncio.Event(), threading.Event()
        loop = asyncio.get_running_loop()

        def stall():
            loop.call_soon_threadsafe(blocked.set)
            release.wait(10)

        stalled = asyncio.ensure_future(store._run(stall))
        append = asyncio.ensure_future(store.append(session_id, "user", "queued behind"))
        await blocked.wait()  # the loop is still turning while the database thread is stuck
        assert not append.done()
        release.set()
        await asyncio.gather(stalled, append)
        assert [t.text for t in await store.history(session_id)] == ["queued behind"]
        await store.close()

    run(scenario())


def test_postgres_migration_is_idempotent_and_safe_to_race(postgres_engine):
    url = postgres_engine.create_database()
    latest = MIGRATIONS[-1][0]

    async def scenario():
        connections = [await asyncpg.connect(url) for _ in range(3)]
        versions = await asyncio.gather(*(migrate(c) for c in connections))
        assert versions == [latest] * 3
        assert await migrate(connections[0]) == latest  # again: nothing to do
        rows = await connections[0].fetch("SELECT version FROM schema_version ORDER BY version")
        assert [r["version"] for r in rows] == [v for v, _ in MIGRATIONS]
        await asyncio.gather(*(c.close() for c in connections))
        store = await PostgresStore.open(url)  # a node starting on a migrated database
        session_id = await store.create("p", {"k": [1, 2]})
        assert await store.exists(session_id)
        await store.close()

    run(scenario())


def test_a_sqlite_file_from_before_resume_tokens_is_upgraded(tmp_path):
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA)
    old.execute(
        "INSERT INTO sessions (id, pipeline_id, metadata, created_at, updated_at)"
        " VALUES ('sess_1', 'pl', '{}', 1e12, 1e12)"
    )
    old.commit()
    old.close()

    async def scenario():
        store = SessionStore(path)
        assert await store.resume_digest("sess_1") is None
        await store.save_resume_digest("sess_1", "abc")
        assert await store.resume_digest("sess_1") == "abc"
        await store.close()

    run(scenario())


def test_a_postgres_database_from_before_resume_tokens_is_migrated(postgres_engine, monkeypatch):
    url = postgres_engine.create_database()

    async def scenario():
        connection = await asyncpg.connect(url)
        monkeypatch.setattr(store_postgres, "MIGRATIONS", MIGRATIONS[:1])
        assert await migrate(connection) == 1
        await connection.execute("INSERT INTO sessions (id, pipeline_id) VALUES ('sess_1', 'pl')")
        await connection.close()
        monkeypatch.undo()
        store = await PostgresStore.open(url)
        assert await store.exists("sess_1")  # kept across the migration
        assert await store.resume_digest("sess_1") is None
        await store.save_resume_digest("sess_1", "abc")
        assert await store.resume_digest("sess_1") == "abc"
        await store.close()

    run(scenario())


def test_an_interrupted_turn_is_marked_on_every_backend(open_history):
    async def scenario():
        store = await open_history()
        session_id = await store.create("p", {})
        await store.append(session_id, "user", "hello", "t1")
        await store.append(session_id, "assistant", "Hi there, I", "t2", interrupted=True)
        assert [t.to_dict() for t in await store.history(session_id)] == [
            {"role": "user", "text": "hello"},
            {"role": "assistant", "text": "Hi there, I", "interrupted": True},
        ]
        await store.close()

    run(scenario())


def test_a_turn_being_heard_is_replaced_in_its_place_then_finished_or_removed(open_history):
    """`record`: the answer being played is stored as far as it was heard and replaced in
    place as it goes (a user turn stored meanwhile stays after it), then stored as finally
    heard; an answer finally heard as nothing leaves nothing."""

    async def scenario():
        store = await open_history()
        session_id = await store.create("p", {})
        await store.append(session_id, "user", "tell me a story", "t1")
        await store.record(session_id, "assistant", "Once.", "t2", interrupted=True)
        await store.append(session_id, "user", "go on", "t3")
        await store.record(session_id, "assistant", "Once. Upon.", "t2", interrupted=True)
        assert [t.to_dict() for t in await store.history(session_id)] == [
            {"role": "user", "text": "tell me a story"},
            {"role": "assistant", "text": "Once. Upon.", "interrupted": True},
            {"role": "user", "text": "go on"},
        ]
        await store.record(session_id, "assistant", "Once. Upon. A time.", "t2", interrupted=False)
        assert (await store.history(session_id))[1].to_dict() == {
            "role": "assistant",
            "text": "Once. Upon. A time.",
        }
        await store.record(session_id, "assistant", "", "t2", interrupted=True)
        await store.record(session_id, "assistant", "", "t4", interrupted=True)
        assert [t.turn_id for t in await store.history(session_id)] == ["t1", "t3"]
        with pytest.raises(UnknownSession):
            await store.record("sess_gone", "assistant", "Hi.", "t5", interrupted=False)
        await store.close()

    run(scenario())


def test_a_sqlite_file_from_before_interrupted_turns_is_upgraded(tmp_path):
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE sessions (id TEXT PRIMARY KEY, pipeline_id TEXT NOT NULL,"
        " metadata TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL, updated_at REAL NOT NULL);"
        "CREATE TABLE turns (session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,"
        " seq INTEGER NOT NULL, role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),"
        " text TEXT NOT NULL, turn_id TEXT, created_at REAL NOT NULL,"
        " PRIMARY KEY (session_id, seq));"
        "INSERT INTO sessions VALUES ('sess_1', 'p', '{}', 1e12, 1e12);"
        "INSERT INTO turns VALUES ('sess_1', 1, 'user', 'hello', 't1', 0);"
    )
    old.commit()
    old.close()

    async def scenario():
        store = SessionStore(path)
        await store.append("sess_1", "assistant", "Hi there, I", "t2", interrupted=True)
        assert [t.to_dict() for t in await store.history("sess_1")] == [
            {"role": "user", "text": "hello"},
            {"role": "assistant", "text": "Hi there, I", "interrupted": True},
        ]
        await store.close()

    run(scenario())
