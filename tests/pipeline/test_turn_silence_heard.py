"""How much of a silence inside a turn the recogniser is given (turns.py
`recognised_silence_ms`, STT_SILENCE_MS): under load a turn ends 0.7-1 s into its silence and
the final transcript waited for all of it to be decoded. Scripted with the fake voice detector
and turn-end model of test_turn_end_rules.py."""

from __future__ import annotations

from dataclasses import replace

import pytest

from server.config import Settings, SettingsError
from server.pipeline.turns import SpeechAudio, SpeechEnded, SpeechStarted, TurnDetector

from .test_turn_end_rules import FRAME, LOUD, QUIET, SETTINGS, FakeModel, fakes  # noqa: F401


def heard(frames: list[bytes], settings) -> tuple[list[tuple[bytes, int]], int]:
    """The turn's audio as the recogniser gets it (pre-roll and speech audio), as runs of
    (frame, how many in a row), and the turns that ended."""
    FakeModel.answers = [0.1]  # never sounds finished: every silence runs to the fallback
    detector, audio, ended = TurnDetector(settings), b"", 0
    for frame in frames:
        for event in detector.feed(frame):
            if isinstance(event, SpeechStarted):
                audio += event.preroll
            elif isinstance(event, SpeechAudio):
                audio += event.pcm
            elif isinstance(event, SpeechEnded):
                ended += 1
    runs: list[tuple[bytes, int]] = []
    for offset in range(0, len(audio), FRAME):
        frame = audio[offset : offset + FRAME]
        if runs and runs[-1][0] == frame:
            runs[-1] = (frame, runs[-1][1] + 1)
        else:
            runs.append((frame, 1))
    return runs, ended


FRAMES = [QUIET] * 5 + [LOUD] * 20 + [QUIET] * 25 + [LOUD] * 10 + [QUIET] * 40  # 800 ms pause


def test_the_recogniser_hears_at_most_the_setting_of_a_silence_and_the_onset_after_it():
    runs, ended = heard(FRAMES, SETTINGS)
    assert ended == 1  # one turn: the 800 ms pause is shorter than the 1 s fallback
    assert [(frame == LOUD, n) for frame, n in runs] == [
        (False, 5),  # the pre-roll before the voice
        (True, 20),
        (False, 9 + 3),  # 288 ms of the pause, then the 96 ms before the voice came back
        (True, 10),
        (False, 9),  # of the 1 s that ended the turn
    ]


def test_with_the_setting_at_0_the_recogniser_hears_every_silence_as_before():
    runs, _ = heard(FRAMES, replace(SETTINGS, recognised_silence_ms=0))
    assert [(frame == LOUD, n) for frame, n in runs] == [
        (False, 5), (True, 20), (False, 25), (True, 10), (False, 32)
    ]  # fmt: skip


def test_the_setting_is_bounded():
    assert Settings.from_env({}).stt_silence_ms == 300
    assert Settings.from_env({"STT_SILENCE_MS": "0"}).stt_silence_ms == 0
    with pytest.raises(SettingsError, match="STT_SILENCE_MS"):
        Settings.from_env({"STT_SILENCE_MS": "2500"})
