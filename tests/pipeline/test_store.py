"""Session history in SQLite survives reopening the file (a server restart)."""

from __future__ import annotations

import sqlite3

from server.pipeline.store import SessionStore


def test_history_survives_reopening(tmp_path):
    path = tmp_path / "data" / "sessions.sqlite3"
    store = SessionStore(path)
    session_id = store.create("pl_1", {"userId": "7"})
    assert session_id.startswith("sess_")
    store.append(session_id, "user", "what time is it", "t1")
    store.append(session_id, "assistant", "It is noon.", "t2")
    store.close()

    reopened = SessionStore(path)
    assert reopened.exists(session_id)
    assert not reopened.exists("sess_other")
    history = reopened.history(session_id)
    assert [(t.role, t.text) for t in history] == [
        ("user", "what time is it"),
        ("assistant", "It is noon."),
    ]
    assert history[0].to_dict() == {"role": "user", "text": "what time is it"}


def test_history_limit_keeps_the_latest_turns_in_order(tmp_path):
    store = SessionStore(tmp_path / "s.sqlite3")
    session_id = store.create("p", {})
    for n in range(10):
        store.append(session_id, "user", f"turn {n}")
    assert [t.text for t in store.history(session_id, limit=3)] == ["turn 7", "turn 8", "turn 9"]


def test_sessions_are_separate(tmp_path):
    store = SessionStore(tmp_path / "s.sqlite3")
    a, b = store.create("p", {}), store.create("p", {})
    store.append(a, "user", "hello")
    assert store.history(b) == []
    assert a != b


def test_an_interrupted_turn_is_marked_and_a_file_from_before_the_mark_is_upgraded(tmp_path):
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE sessions (id TEXT PRIMARY KEY, pipeline_id TEXT NOT NULL,"
        " metadata TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL, updated_at REAL NOT NULL);"
        "CREATE TABLE turns (session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,"
        " seq INTEGER NOT NULL, role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),"
        " text TEXT NOT NULL, turn_id TEXT, created_at REAL NOT NULL,"
        " PRIMARY KEY (session_id, seq));"
        "INSERT INTO sessions VALUES ('sess_1', 'p', '{}', 0, 0);"
        "INSERT INTO turns VALUES ('sess_1', 1, 'user', 'hello', 't1', 0);"
    )
    old.commit()
    old.close()
    store = SessionStore(path)
    store.append("sess_1", "assistant", "Hi there, I", "t2", interrupted=True)
    assert [t.to_dict() for t in store.history("sess_1")] == [
        {"role": "user", "text": "hello"},
        {"role": "assistant", "text": "Hi there, I", "interrupted": True},
    ]
