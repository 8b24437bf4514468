"""A turn-end look whose words are late (turns.py `late_words_end_ms`, TURN_END_LATE_WORDS_MS):
under load the recogniser falls behind the voice and its words for a look come seconds late,
which held every such turn to the 1 s fallback. Now the model decides alone once the silence is
longer than the pauses inside sentences, unless words heard in that pause vetoed an end.

Scripted with the fake voice detector and turn-end model of test_turn_end_rules.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from server.config import Settings, SettingsError
from server.pipeline.turns import (
    SpeechEnded,
    SpeechStarted,
    TurnDetector,
    TurnSettings,
    WordsWanted,
)

from .test_turn_end_rules import LOUD, QUIET, SETTINGS, FakeModel, fakes  # noqa: F401

LATE = SETTINGS.late_words_end_ms


def run(frames: list[bytes], settings: TurnSettings, words: str, after: int | None) -> list:
    """Every event, frame by frame; the words asked for (WordsWanted) are answered only once
    the silence reaches `after` frames (None: never, a recogniser far behind). Each
    SpeechEnded is replaced by the silent frames before it."""
    detector, events, silent, wanted = TurnDetector(settings), [], 0, []
    for frame in frames:
        silent = silent + 1 if frame != LOUD else 0
        pending = detector.feed(frame)
        if wanted and after is not None and silent >= after:
            for look in wanted:
                detector.hint(words, look.look)
            wanted = []
            pending += detector.feed(b"")
        for event in pending:
            if isinstance(event, WordsWanted):
                wanted.append(event)
            events.append(silent if isinstance(event, SpeechEnded) else event)
    return events


def ends(events: list) -> list[int]:
    return [e for e in events if isinstance(e, int)]


def turns(events: list) -> int:
    return sum(isinstance(e, SpeechStarted) for e in events)


def test_a_look_whose_words_never_come_ends_the_turn_on_the_model_at_the_bound():
    """The voice sounds finished (0.99 at 96 ms); the words never come. Before
    (`late_words_end_ms` 0) the turn waited for them to the 1 s fallback."""
    frames = [QUIET] * 5 + [LOUD] * 20 + [QUIET] * 40
    (end,) = ends(run(frames, SETTINGS, "what time is it", after=None))
    assert end * 32 == 704  # the first 32 ms frame at 700 ms of silence
    assert LATE == 700
    (before,) = ends(run(frames, replace(SETTINGS, late_words_end_ms=0), "", after=None))
    assert before * 32 == 1024  # the fallback


def test_words_that_come_in_time_still_decide():
    frames = [QUIET] * 5 + [LOUD] * 20 + [QUIET] * 40
    (end,) = ends(run(frames, SETTINGS, "what time is it", after=8))  # at 256 ms
    assert end * 32 == 256


def test_late_words_that_veto_keep_the_turn_open_past_the_bound():
    """Words heard in the pause that do not end a sentence ("a table for") keep their veto:
    the model alone does not end that pause at the bound (700 ms). A voice the model is sure
    of at the second look ends it at `vetoed_words_end_ms` (800 ms; with that rule off, at
    the 1 s fallback)."""
    frames = [QUIET] * 5 + [LOUD] * 20 + [QUIET] * 40
    FakeModel.answers = [0.99]
    (end,) = ends(run(frames, SETTINGS, "i would like a table for", after=12))
    assert end * 32 == SETTINGS.vetoed_words_end_ms == 800 > LATE
    FakeModel.answers = [0.99]
    off = replace(SETTINGS, vetoed_words_end_ms=0)
    (end,) = ends(run(frames, off, "i would like a table for", after=12))
    assert end * 32 == 1024


def test_a_hesitation_shorter_than_the_bound_is_not_cut_while_the_words_are_late():
    """A 608 ms pause inside a sentence, the voice sure of an end at both looks, the words
    never back: one turn, ended after the last word."""
    FakeModel.answers = [0.99]
    frames = [QUIET] * 5 + [LOUD] * 20 + [QUIET] * 19 + [LOUD] * 10 + [QUIET] * 40
    events = run(frames, SETTINGS, "", after=None)
    assert turns(events) == 1
    assert [end * 32 for end in ends(events)] == [704]


def test_without_words_a_less_sure_first_look_waits_for_the_second():
    """At 96 ms the voice is 0.8: enough only with words that clearly end a sentence, which
    never come. At the bound the first look gives up on them; the second look (asked then)
    is sure (0.97 > 0.9) and decides alone: the turn ends at once, before the fallback."""
    FakeModel.answers = [0.8, 0.97]
    frames = [QUIET] * 5 + [LOUD] * 20 + [QUIET] * 40
    events = run(frames, SETTINGS, "", after=None)
    (end,) = ends(events)
    assert 704 <= end * 32 < 1024
    FakeModel.answers = [0.3]
    (unsure,) = ends(run(frames, SETTINGS, "", after=None))
    assert unsure * 32 == 1024  # a voice that never sounds finished: the fallback


def test_the_setting_is_bounded():
    assert Settings.from_env({}).turn_end_late_words_ms == 700
    assert Settings.from_env({"TURN_END_LATE_WORDS_MS": "0"}).turn_end_late_words_ms == 0
    with pytest.raises(SettingsError, match="TURN_END_LATE_WORDS_MS"):
        Settings.from_env({"TURN_END_LATE_WORDS_MS": "1500"})
    with pytest.raises(ValueError, match="late_words_end_ms"):
        TurnSettings(late_words_end_ms=-1)
