"""A session's history while its store is away (server/pipeline/session_history.py), on the
SQLite store made to fail on demand: writes kept in order and stored when it returns, reads
answered from the session's own view, the client told once per outage, and the bounds."""

from __future__ import annotations

import asyncio
import logging

import pytest

from server.pipeline.session_history import SessionHistory
from server.pipeline.store import SessionStore
from server.pipeline.stores import StoreUnavailable
from tests.support.aio import run


class Failing(SessionStore):
    """The SQLite store, unreachable while `down`; `failed` counts the calls that failed."""

    down = False
    failed = 0

    async def _run(self, call, *args):
        if self.down:
            self.failed += 1
            raise StoreUnavailable("history", "the history database (test) cannot be reached")
        return await super()._run(call, *args)


def texts(turns) -> list[str]:
    return [f"{t.role}:{t.text}" + ("~" if t.interrupted else "") for t in turns]


class Clock:
    """A clock that moves only when told."""

    now = 0.0

    def __call__(self) -> float:
        return self.now


async def a_session(tmp_path, *, retry_s=0.0, clock=None):
    """A session on a failing store; by default the store is tried again at every call."""
    store = Failing(tmp_path / "h.sqlite3")
    session_id = await store.create("p", {})
    errors = []
    history = SessionHistory(
        store, session_id, errors.append, logging.getLogger("test"),
        retry_s=retry_s, clock=clock or Clock(),
    )  # fmt: skip
    return store, session_id, history, errors


def test_writes_kept_while_down_are_stored_in_order_when_the_store_returns(tmp_path):
    async def scenario():
        store, session_id, history, errors = await a_session(tmp_path)
        await history.append("user", "one", "t1")
        await history.record("assistant", "answer one", "t1", interrupted=False)
        store.down = True
        await history.append("user", "two", "t2")
        for heard in ("first.", "first. second."):  # heard checkpoints: the latest is kept
            await history.record("assistant", heard, "t2", interrupted=True)
        view = await history.turns()  # the store cannot be read: the session's own view
        assert len(history.kept) == 2 and len(errors) == 1
        store.down = False
        await history.append("user", "three", "t3")
        return view, await store.history(session_id), errors

    view, stored, errors = run(scenario())
    expected = ["user:one", "assistant:answer one", "user:two", "assistant:first. second.~"]
    assert texts(view) == expected
    assert texts(stored) == [*expected, "user:three"]
    assert [e.code for e in errors] == ["history_unavailable", "history_stored"]
    assert "cannot be reached" in errors[0].message
    assert errors[1].resolves == "history_unavailable" and "saved again" in errors[1].message


def test_each_outage_is_reported_once_and_its_end_too(tmp_path):
    async def scenario():
        store, _, history, errors = await a_session(tmp_path)
        for outage in range(2):
            store.down = True
            for n in range(3):
                await history.append("user", f"{outage}.{n}", None)
            store.down = False
            await history.turns()  # back: everything kept is stored
            assert history.kept == []
        return errors

    told = [m.code for m in run(scenario())]
    assert told == ["history_unavailable", "history_stored"] * 2


def test_kept_writes_are_bounded_by_the_stores_retention_and_the_oldest_go(tmp_path):
    async def scenario():
        store, session_id, history, _ = await a_session(tmp_path)
        store.max_turns = 3  # HISTORY_MAX_TURNS: the store would keep no more anyway
        store.down = True
        for n in range(5):
            await history.append("user", str(n), None)
        assert history.dropped == 2
        store.down = False
        await history.close()
        return await store.history(session_id)

    assert texts(run(scenario())) == ["user:2", "user:3", "user:4"]


def test_what_is_still_kept_when_the_session_ends_is_logged_as_lost(tmp_path, caplog):
    async def scenario():
        store, _, history, _ = await a_session(tmp_path)
        store.down = True
        await history.append("user", "never stored", None)
        await history.close()

    with caplog.at_level(logging.ERROR):
        run(scenario())
    assert "1 turns of this session were never stored" in caplog.text


@pytest.mark.parametrize("text", ["", "all of it"])
def test_a_record_kept_while_down_replaces_or_removes_its_turn_in_the_view(tmp_path, text):
    async def scenario():
        store, _, history, _ = await a_session(tmp_path)
        await history.record("assistant", "some of it", "t1", interrupted=True)
        store.down = True
        await history.record("assistant", text, "t1", interrupted=False)
        return await history.turns()

    assert texts(run(scenario())) == ([f"assistant:{text}"] if text else [])


def test_a_store_that_failed_is_not_asked_again_before_the_retry_interval(tmp_path):
    """A store whose connections hang costs each call its driver's timeouts: after one failure
    the session answers from its own view at once, and tries again once the interval is over."""

    async def scenario():
        clock = Clock()
        store, session_id, history, errors = await a_session(tmp_path, retry_s=10, clock=clock)
        await history.append("user", "one", "t1")
        store.down = True
        await history.append("user", "two", "t2")  # the one failed attempt of this interval
        assert store.failed == 1
        clock.now = 9.9
        await history.record("assistant", "answer two", "t2", interrupted=False)
        view = await history.turns()
        assert store.failed == 1, "the store was asked again within the retry interval"
        clock.now = 10.0
        assert texts(await history.turns()) == texts(view)
        assert store.failed == 2  # one attempt when the interval was over: still down
        store.down = False
        await history.append("user", "three", "t3")  # within the new interval: only kept
        assert history.kept and store.failed == 2
        clock.now = 20.0
        await history.append("user", "four", "t4")  # the interval is over: all stored
        return view, await store.history(session_id), errors

    view, stored, errors = run(scenario())
    assert texts(view) == ["user:one", "user:two", "assistant:answer two"]
    assert texts(stored) == [*texts(view), "user:three", "user:four"]
    assert [e.code for e in errors] == ["history_unavailable", "history_stored"]


class Watched(Failing):
    """The failing store, with an event set at each failed call."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.failures = asyncio.Event()

    async def _run(self, call, *args):
        try:
            return await super()._run(call, *args)
        except StoreUnavailable:
            self.failures.set()
            raise


async def a_timed_session(tmp_path, retry_s: float):
    """A session on a failing store, on the real clock; `told` is set at each report."""
    store = Watched(tmp_path / "h.sqlite3")
    session_id = await store.create("p", {})
    reports, told = [], asyncio.Event()

    def report(message):
        reports.append(message)
        told.set()

    history = SessionHistory(store, session_id, report, logging.getLogger("test"), retry_s=retry_s)
    return store, session_id, history, reports, told


def test_kept_writes_are_stored_when_the_store_returns_without_another_turn(tmp_path):
    """A session that stays silent after the store is back (the user listening, or gone quiet):
    its kept writes are stored, and its client told, once the interval is over — not only at
    its next turn or when it ends."""

    async def scenario():
        store, session_id, history, reports, told = await a_timed_session(tmp_path, 0.05)
        store.down = True
        await history.append("user", "said while down", "t1")
        await told.wait()  # history_unavailable
        told.clear()
        store.down = False  # back; the session makes no call from here on
        await told.wait()
        stored = await store.history(session_id)
        await history.close()
        return stored, reports, history.kept

    stored, reports, kept = run(scenario(), timeout=30)
    assert texts(stored) == ["user:said while down"] and kept == []
    assert [m.code for m in reports] == ["history_unavailable", "history_stored"]


def test_the_timer_tries_once_an_interval_while_the_store_stays_down_and_stops_at_close(tmp_path):
    async def scenario():
        store, _, history, reports, _ = await a_timed_session(tmp_path, 0.05)
        store.down = True
        await history.append("user", "one", "t1")
        for _ in range(2):  # two more failed attempts, made by the timer alone
            store.failures.clear()
            await store.failures.wait()
        timer = history._retry_task
        await history.close()
        await asyncio.wait([timer])
        return store.failed, reports, timer

    failed, reports, timer = run(scenario(), timeout=30)
    assert failed == 3 + 1  # the write, two timer attempts, and close's last one
    assert [m.code for m in reports] == ["history_unavailable"]  # told once per outage
    assert timer.cancelled()
