"""limits.FloodPenalty: how long an address closed for flooding audio waits (a fake clock)."""

from __future__ import annotations

from server import limits
from server.limits import FloodPenalty


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_address_waits_out_its_penalty_and_others_never_wait():
    clock = Clock()
    penalty = FloodPenalty(60, clock=clock)
    penalty.penalise("10.0.0.66")
    assert penalty.remaining("10.0.0.66") == 60
    assert penalty.remaining("10.0.0.1") is None
    clock.now += 59.5
    assert penalty.remaining("10.0.0.66") == 1  # whole seconds, never 0 while barred
    clock.now += 0.5
    assert penalty.remaining("10.0.0.66") is None


def test_zero_turns_it_off():
    penalty = FloodPenalty(0)
    penalty.penalise("10.0.0.66")
    assert penalty.remaining("10.0.0.66") is None


def test_the_addresses_remembered_are_bounded(monkeypatch):
    monkeypatch.setattr(limits, "MAX_TRACKED_ADDRESSES", 3)
    penalty = FloodPenalty(60, clock=Clock())
    for n in range(5):
        penalty.penalise(f"10.0.0.{n}")
    assert [penalty.remaining(f"10.0.0.{n}") for n in range(5)] == [None, None, 60, 60, 60]
