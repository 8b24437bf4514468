"""The outbox: order, urgent control first, and a dropped turn stays dropped."""

from __future__ import annotations

import asyncio
import json

from layercode_client import protocol as p
from server.pipeline.outbox import DROPPED_TURNS_KEPT, Outbox
from tests.support.aio import run


def audio(turn_id: str, n: int) -> p.ResponseAudio:
    return p.ResponseAudio(content="AAAA", turn_id=turn_id, delta_id=f"{turn_id}-{n}")


async def written(outbox: Outbox, frames: list) -> list[tuple[str, str | None]]:
    writer = asyncio.create_task(outbox.run())
    await outbox.drain()
    outbox.close()
    await writer
    return [(f["type"], f.get("turn_id")) for f in map(json.loads, frames)]


def test_a_dropped_turn_loses_its_queue_and_is_refused_later():
    async def scenario():
        frames: list[str] = []

        async def send(text: str) -> None:
            frames.append(text)

        outbox = Outbox(send)
        outbox.put(p.TurnStart(role="assistant", turn_id="a"))
        outbox.put(audio("a", 1))
        outbox.put(p.ResponseText(content="Hi.", turn_id="a"))
        outbox.put(p.UserTranscript(content="hello", turn_id="u0"))
        assert outbox.drop_turn("a") == 3
        outbox.put_urgent(p.TurnStart(role="user", turn_id="u1"))
        # Late output of the dropped turn, from any stage, is refused:
        assert not outbox.put(audio("a", 2))
        assert not outbox.put(p.ResponseText(content="More.", turn_id="a"))
        assert not outbox.put(p.ResponseData(content={}, turn_id="a"))
        assert not outbox.put(p.ResponseEnd(turn_id="a"))
        assert not outbox.put(p.ErrorMessage(code="agent_timeout", message="x", turn_id="a"))
        assert outbox.refused == 5
        assert outbox.put(audio("b", 1))  # other turns go on
        return await written(outbox, frames)

    assert run(scenario()) == [
        ("turn.start", "u1"),
        ("user.transcript", "u0"),
        ("response.audio", "b"),
    ]


def test_dropped_ids_are_remembered_within_a_bound():
    outbox = Outbox(lambda text: None)
    for n in range(DROPPED_TURNS_KEPT + 5):
        outbox.drop_turn(f"t{n}")
    assert not outbox.put(audio(f"t{DROPPED_TURNS_KEPT + 4}", 1))
    assert outbox.put(audio("t0", 1))  # the oldest was forgotten: the memory is bounded


def test_nothing_is_accepted_after_close():
    outbox = Outbox(lambda text: None)
    outbox.close()
    assert not outbox.put(audio("a", 1))
    assert outbox.pending() == 0
