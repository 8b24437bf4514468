"""Session history in SQLite survives reopening the file (a server restart)."""

from __future__ import annotations

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


def test_each_conversation_keeps_only_its_last_turns(tmp_path):
    store = SessionStore(tmp_path / "s.sqlite3", max_turns=3)
    session_id = store.create("pl", {})
    other = store.create("pl", {})
    for n in range(10):
        store.append(session_id, "user", f"turn {n}")
    store.append(other, "user", "kept")
    assert [t.text for t in store.history(session_id)] == ["turn 7", "turn 8", "turn 9"]
    assert [t.text for t in store.history(other)] == ["kept"]
    (rows,) = store._db.execute("SELECT COUNT(*) FROM turns").fetchone()
    assert rows == 4  # pruned from the file, not just from what history() shows


def test_conversations_untouched_too_long_are_deleted(tmp_path):
    import time

    path = tmp_path / "s.sqlite3"
    store = SessionStore(path, max_age_s=3600)
    stale = store.create("pl", {})
    fresh = store.create("pl", {})
    store.append(stale, "user", "old news")
    store._db.execute(
        "UPDATE sessions SET updated_at = ? WHERE id = ?", (time.time() - 7200, stale)
    )
    assert store.prune() == 1
    assert not store.exists(stale) and store.exists(fresh)
    assert store.history(stale) == []
    store.close()
    # Opening the file prunes too, so a server that restarts daily still forgets.
    store = SessionStore(path, max_age_s=3600)
    store._db.execute("UPDATE sessions SET updated_at = 0 WHERE id = ?", (fresh,))
    store.close()
    assert not SessionStore(path, max_age_s=3600).exists(fresh)


def test_a_file_from_before_resume_tokens_is_upgraded(tmp_path):
    import sqlite3

    from server.pipeline.store import SCHEMA

    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA)
    old.execute(
        "INSERT INTO sessions (id, pipeline_id, metadata, created_at, updated_at)"
        " VALUES ('sess_1', 'pl', '{}', 1e12, 1e12)"
    )
    old.commit()
    old.close()
    store = SessionStore(path)
    assert store.resume_digest("sess_1") is None
    store.save_resume_digest("sess_1", "abc")
    assert store.resume_digest("sess_1") == "abc"
    assert store.delete("sess_1") and not store.delete("sess_1")
