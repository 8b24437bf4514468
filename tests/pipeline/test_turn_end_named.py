"""Every turn's end names the rule that ended it (`SpeechEnded.rule`, turns.END_RULES), which
the turn's timings carry as `end_rule` (docs/protocol.md): `./dev bench load` counts the
turns by rule, to say which rule the slow turns under load end on (docs/scaling.md).

Scripted with the fake voice detector and turn-end model of test_turn_end_rules.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from server.pipeline.timing import TurnTimings
from server.pipeline.turns import END_RULES, SpeechEnded, TurnDetector, WordsWanted

from .test_turn_end_rules import LOUD, QUIET, SETTINGS, FakeModel, fakes  # noqa: F401

TURN = [QUIET] * 5 + [LOUD] * 20 + [QUIET] * 40


def ended_by(settings, words: str | None, answers=(0.99,), frames=TURN) -> tuple[str, int]:
    """The rule of the one turn in `frames`, and the silent frames before its end; the words
    asked for are answered at once (None: never, a recogniser far behind)."""
    FakeModel.answers = list(answers)
    detector, silent, ends = TurnDetector(settings), 0, []
    for frame in frames:
        silent = silent + 1 if frame != LOUD else 0
        pending = detector.feed(frame)
        while pending:
            event = pending.pop(0)
            if isinstance(event, WordsWanted) and words is not None:
                detector.hint(words, event.look)
                pending += detector.feed(b"")
            elif isinstance(event, SpeechEnded):
                ends.append((event.rule, silent))
    (end,) = ends
    return end


@pytest.mark.parametrize(
    ("changes", "words", "answers", "rule", "silence_ms"),
    [
        ({}, "what time is it", (0.99,), "model+words@first", 96),
        ({}, None, (0.99,), "late-words@first", 704),
        ({"late_words_end_ms": 0}, None, (0.99,), "fallback", 1024),
        ({}, "i would like a table for", (0.99,), "vetoed-words", 800),
        ({"text_veto": False}, None, (0.99,), "model@first", 96),
        ({"end_model": "off"}, None, (0.99,), "timer", 416),
    ],
)
def test_each_turn_end_names_its_rule(changes, words, answers, rule, silence_ms):
    found, silent = ended_by(replace(SETTINGS, **changes), words, answers)
    assert found == rule
    assert found.partition("@")[0] in END_RULES
    assert silent * 32 == silence_ms


def test_the_client_ending_a_turn_is_named():
    FakeModel.answers = [0.1]
    detector = TurnDetector(SETTINGS)
    for frame in [QUIET] * 5 + [LOUD] * 20:
        detector.feed(frame)
    (ended,) = detector.force_end()
    assert ended.rule == "client"


def test_the_timings_carry_the_rule():
    timings = TurnTimings(speech_end=1.0, endpoint=1.5, end_rule="late-words@first")
    assert timings.report()["end_rule"] == "late-words@first"
    assert "end_rule" not in TurnTimings(speech_end=1.0, endpoint=1.5).report()
