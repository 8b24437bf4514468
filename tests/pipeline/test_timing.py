"""Per-turn timings and the trace of the shared queues (server/pipeline/timing.py)."""

from __future__ import annotations

import pytest

from server.pipeline.stt import Reply
from server.pipeline.timing import STAGES, TurnTimings


def test_the_queue_trace_is_reported_in_milliseconds_summed_over_a_turns_requests():
    timings = TurnTimings()
    timings.add_stage("model_queue", 0.010)
    timings.add_stage("model_queue", 0.0255)  # a second look
    timings.add_stage("tts_work", 0.150)
    report = timings.report()
    assert report["model_queue_ms"] == 35.5
    assert report["tts_work_ms"] == 150.0
    assert "words_ms" not in report  # only what was measured


def test_an_unknown_stage_is_refused():
    with pytest.raises(ValueError, match="stage"):
        TurnTimings().add_stage("coffee", 1.0)
    assert "final_queue" in STAGES


def test_a_workers_reply_tells_its_wait_from_its_work():
    reply = Reply("hello", sent=10.0, started=10.25, ended=10.3)
    assert reply.waited == pytest.approx(0.25)
    assert reply.ran == pytest.approx(0.05)
