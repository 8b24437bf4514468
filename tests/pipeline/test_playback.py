"""What the listener heard: play-position estimates from what was sent and when."""

from __future__ import annotations

from server.pipeline.playback import BYTES_PER_SECOND, PlaybackTracker

SECOND = BYTES_PER_SECOND


def test_chunks_play_back_to_back_and_the_estimate_follows_the_clock():
    tracker = PlaybackTracker()
    tracker.record("t", "t-1", 0, b"\0" * SECOND, now=100.0)
    second = tracker.record("t", "t-2", SECOND, b"\0" * SECOND, now=100.2)
    assert second.due == 101.0  # after the first, not when it was sent
    assert tracker.position(100.5) == SECOND // 2
    assert tracker.position(101.25) == SECOND + SECOND // 4
    assert tracker.position(150.0) == 2 * SECOND  # never past what was sent
    assert tracker.ahead(100.5) == 1.5


def test_a_player_that_ran_dry_starts_again_on_arrival():
    tracker = PlaybackTracker()
    tracker.record("t", "t-1", 0, b"\0" * SECOND, now=100.0)
    late = tracker.record("t", "t-2", SECOND, b"\0" * SECOND, now=103.0)
    assert late.due == 103.0
    assert tracker.position(102.0) == SECOND  # the gap: the first chunk is over
    assert tracker.position(103.5) == SECOND + SECOND // 2


def test_the_clients_report_wins_and_is_clamped_to_what_was_sent():
    tracker = PlaybackTracker()
    tracker.record("t", "t-1", 0, b"\0" * SECOND, now=100.0)
    tracker.record("t", "t-2", SECOND, b"\0" * SECOND, now=100.0)
    assert tracker.position_reported("t", "t-2", 250) == SECOND // 4
    assert tracker.position_reported("t", "t-1", None) == SECOND
    assert tracker.position_reported("t", None, 99_000) == 2 * SECOND
    assert tracker.position_reported("t", "unknown", None) == 2 * SECOND


def test_a_resumed_wire_turn_is_estimated_from_where_it_restarted():
    tracker = PlaybackTracker()
    tracker.record("t", "t-1", 0, b"\0" * SECOND, now=100.0)
    tracker.restart()
    tracker.record("r", "r-1", SECOND // 2, b"\0" * SECOND, now=100.6)
    assert tracker.position(100.5) == SECOND // 2  # nothing of the resumed turn is due yet
    assert tracker.position(101.1) == SECOND
    assert tracker.position_reported("r", None, 100) == SECOND // 2 + SECOND // 10


def test_chunks_sent_at_once_are_due_back_to_back_the_echo_guards_reference_times():
    tracker = PlaybackTracker()
    chunks = [
        tracker.record("t", f"t-{n}", n * SECOND // 4, b"\1" * (SECOND // 4), now=100.0)
        for n in range(4)
    ]
    assert [c.due for c in chunks] == [100.0, 100.25, 100.5, 100.75]
    late = tracker.record("t", "t-4", SECOND, b"\1" * (SECOND // 4), now=102.0)
    assert late.due == 102.0  # the player ran dry: it plays on arrival
