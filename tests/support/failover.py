"""What a conversation must look like after the node serving it died mid-answer, shared by the
voice-client test (tests/pipeline/test_multinode.py) and the browser test
(tests/browser/test_failover.py).

The agent streams `STORY`; the node is killed after the first sentence of the cut answer was
stored. `wait_stored` reads the history straight from PostgreSQL (what any node will read),
and `check_history_after_kill` checks the history the agent received on the surviving node:
every turn stored before the kill in order, the answer heard to its end whole, and the cut
answer only as far as it was heard — whole sentences, marked interrupted — never as fully said.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

STORY = [
    "The harbour was quiet that morning.",
    "A small boat drifted past the pier.",
    "Then the wind changed its mind.",
    "The fisherman waved from the deck.",
    "And the gulls followed them home.",
]
STORED_WAIT_S = 60.0  # a bound on waiting for a turn to reach the database, not a pace


async def stored_turns(database: str, session_id: str) -> list[dict]:
    """The conversation's turns as PostgreSQL holds them, in order."""
    connection = await asyncpg.connect(database)
    try:
        rows = await connection.fetch(
            "SELECT role, text, turn_id, interrupted FROM turns WHERE session_id = $1 ORDER BY id",
            session_id,
        )
    finally:
        await connection.close()
    return [dict(row) for row in rows]


async def wait_stored(database: str, session_id: str, found, what: str) -> dict:
    """The first stored turn `found(turn)` accepts, once the database holds it."""
    deadline = time.monotonic() + STORED_WAIT_S
    while True:
        for turn in await stored_turns(database, session_id):
            if found(turn):
                return turn
        if time.monotonic() > deadline:
            raise AssertionError(f"never stored: {what}; stored: "
                                 f"{await stored_turns(database, session_id)}")  # fmt: skip
        await asyncio.sleep(0.05)  # polling interval of the database, not a stand-in for it


def heard_in_full(turn_id: str):
    """Accepts the assistant's answer `turn_id` stored as heard to its end."""
    return lambda t: t["turn_id"] == turn_id and t["role"] == "assistant" and not t["interrupted"]


def heard_in_part(turn_id: str):
    """Accepts the assistant's answer `turn_id` as soon as any of it is stored."""
    return lambda t: t["turn_id"] == turn_id and t["role"] == "assistant"


def check_history_after_kill(history: list[dict], before_kill: dict, *, full: str, cut: str):
    """`history` (the agent's `message` on the surviving node) holds the user's `full` and
    `cut` turns in order, the answer to `full` whole, and the answer to `cut` only as far as
    it was heard: starting with what was stored `before_kill`, whole sentences of `STORY`,
    marked interrupted. A welcome cut at once may sit between the turns."""
    story = " ".join(STORY)
    users = [t["text"] for t in history if t["role"] == "user"]
    assert users == [full, cut], history
    texts = [t["text"] for t in history]
    assert history[texts.index(full) + 1] == {"role": "assistant", "text": story}, history
    cut_turn = history[texts.index(cut) + 1]
    assert cut_turn["role"] == "assistant" and cut_turn.get("interrupted") is True, history
    heard = cut_turn["text"]
    assert heard != story and heard.startswith(before_kill["text"]), (heard, before_kill)
    assert heard in [" ".join(STORY[:n]) for n in range(1, len(STORY))], heard  # whole sentences
