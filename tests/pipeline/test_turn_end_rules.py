"""The turn-end decision's rules (turns.py), with a scripted voice detector and turn-end model:
what each rule changes, and that TURN_END_RULES_OFF gives back the behaviour before it.

The fake Silero hears a voice in any frame that is not all zeros: a frame of tiny samples is
quiet to the energy floor yet speech to it, as the stop inside "min-utes" is to the real one.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import ClassVar

import pytest

from server.config import TURN_END_RULES, Settings, SettingsError
from server.pipeline import turns
from server.pipeline.turns import (
    RULES_OFF,
    SpeechEnded,
    SpeechStarted,
    TurnDetector,
    TurnSettings,
    WordsWanted,
    rules_off,
)

FRAME = 1024  # one Silero frame: 32 ms at 16 kHz
LOUD = b"\x00\x20" * (FRAME // 2)  # voice, well above the energy floor
STOP = b"\x01\x00" * (FRAME // 2)  # under the floor, yet a voice to the (fake) VAD
QUIET = bytes(FRAME)  # silence to both
SETTINGS = TurnSettings(vad="silero", end_model="smart-turn", model_wait=True)
# The silence at which clear words for a less sure first look are heard again (the default,
# bench/endpointing.py --clear-confirms: the shortest that cut nothing at 40 ms chunks).
CONFIRM_MS = 128


class FakeVad:
    def __init__(self, threshold: float = 0.5):
        pass

    def skip(self, frame: bytes) -> None:
        pass

    def is_speech(self, frame: bytes) -> bool:
        return any(frame)


class FakeModel:
    """Answers each look in turn from `answers` (the last one repeated); `gate`, when set,
    holds every answer until the test opens it."""

    answers: ClassVar[list[float]] = [0.99]
    gate: ClassVar[threading.Event | None] = None
    heard: ClassVar[list[int]] = []  # the bytes of audio each look heard

    def __init__(self, threshold: float = 0.5, threads: int = 1, exact: str = "auto"):
        self.asked = 0

    def warm(self) -> None:
        pass

    def probability(self, pcm: bytes) -> float:
        if FakeModel.gate is not None:
            FakeModel.gate.wait()
        self.asked += 1
        FakeModel.heard.append(len(pcm))
        return FakeModel.answers[min(self.asked, len(FakeModel.answers)) - 1]


@pytest.fixture(autouse=True)
def fakes(monkeypatch):
    monkeypatch.setattr(turns, "SileroVad", FakeVad)
    monkeypatch.setattr(turns, "SmartTurn", FakeModel)
    FakeModel.answers, FakeModel.gate, FakeModel.heard = [0.99], None, []


def run(frames: list[bytes], settings: TurnSettings, words) -> list:
    """Every event, frame by frame, the detector's WordsWanted answered with `words` (or, when
    it is callable, with `words(silent frames so far)`); each SpeechEnded is replaced by the
    number of silent frames before it (when the turn ended)."""
    detector, events, silent = TurnDetector(settings), [], 0
    for frame in frames:
        silent = silent + 1 if frame != LOUD else 0
        pending = detector.feed(frame)
        while pending:
            event = pending.pop(0)
            if isinstance(event, WordsWanted):
                detector.hint(words(silent) if callable(words) else words, event.look)
                pending += detector.feed(b"")
            events.append(silent if isinstance(event, SpeechEnded) else event)
    return events


def ends(events: list) -> list[int]:
    return [e for e in events if isinstance(e, int)]


def test_a_finished_waits_for_a_second_frame_the_vad_hears_as_silence():
    """At the look (96 ms under the floor, the last frame silent to the VAD) the model and the
    words say finished; the next frame is a voice to the VAD again (a stop inside a word, then
    its rest): the turn goes on. Before (`vad-confirm` off) it ended at the look."""
    frames = [QUIET] * 5 + [LOUD] * 20 + [STOP, STOP, QUIET, STOP] + [LOUD] * 5 + [QUIET] * 10
    events = run(frames, SETTINGS, "what time is it")
    assert ends(events) == [3]  # one turn, ended after the last word
    before = run(frames, replace(SETTINGS, **rules_off(["vad-confirm"])), "what time is it")
    assert ends(before) == [3, 3]  # cut at the stop


def test_at_the_second_look_weak_words_end_the_turn_only_after_a_longer_silence():
    """At the 450 ms look the model is sure of nearly anything (the silence alone); words that
    end a sentence only weakly ("what can you do", P(end) 0.128 < 0.2) end the turn at 700 ms,
    so a voice back at 600 ms goes on. Before (`weak-words-wait` off) it ended at 450 ms."""
    FakeModel.answers = [0.05, 0.5, 0.97] * 2  # unsure at 96 and 256 ms, sure at 450, twice
    pause = [QUIET] * 19  # 608 ms
    frames = [QUIET] * 5 + [LOUD] * 20 + pause + [LOUD] * 5 + [QUIET] * 40
    events = run(frames, SETTINGS, "what can you do")
    assert [type(e) for e in events if not isinstance(e, int)].count(SpeechStarted) == 1
    (end,) = ends(events)
    assert end * 32 >= SETTINGS.weak_words_end_ms  # the last silence, long enough
    FakeModel.answers = [0.05, 0.5, 0.97] * 2
    before = run(frames, replace(SETTINGS, **rules_off(["weak-words-wait"])), "what can you do")
    assert ends(before)[0] * 32 == 480  # cut inside the 608 ms pause


def test_at_the_second_look_clear_words_still_end_the_turn_at_once():
    FakeModel.answers = [0.05, 0.5, 0.97]  # unsure at the first and middle looks
    frames = [QUIET] * 5 + [LOUD] * 20 + [QUIET] * 40
    (end,) = ends(run(frames, SETTINGS, "what is the weather like today"))  # P(end) 0.30
    assert end * 32 == 480


def test_the_words_are_asked_for_beside_the_model_not_after_its_answer():
    """The model answers in its thread; the words are wanted at the look, in the same feed, so
    the recogniser's answer and the model's overlap. Before (`words-at-look` off) the words
    were asked only once the model had answered."""
    for settings, at_look in ((SETTINGS, True), (replace(SETTINGS, words_at_look=False), False)):
        FakeModel.gate = threading.Event()
        detector = TurnDetector(replace(settings, model_wait=False))
        events = []
        try:
            for frame in [QUIET] * 5 + [LOUD] * 20 + [QUIET] * 3:
                events += detector.feed(frame)
            wanted = [e for e in events if isinstance(e, WordsWanted)]
            assert bool(wanted) is at_look
            assert not detector.pending_decision.done()  # the model has not answered yet
        finally:
            FakeModel.gate.set()  # never leave the model's thread waiting
        detector.pending_decision.result()
        after = detector.feed(b"")
        if not at_look:
            wanted = [e for e in after if isinstance(e, WordsWanted)]
        (look,) = wanted
        detector.hint("what time is it", look.look)
        assert any(isinstance(e, SpeechEnded) for e in after + detector.feed(b""))


def test_every_rule_can_be_turned_off_by_name_and_an_unknown_name_is_refused():
    assert tuple(RULES_OFF) == TURN_END_RULES  # config names what turns.py knows
    previous = TurnSettings(**rules_off(["vad-silence", "words-at-look", "vad-confirm"]))
    assert not previous.look_needs_vad_silence and not previous.words_at_look
    assert previous.finished_vad_frames == 1 and previous.weak_words_end_ms > 0
    with pytest.raises(ValueError, match="vad-confirm"):
        rules_off(["vad-confrim"])
    settings = Settings.from_env({"TURN_END_RULES_OFF": "vad-confirm, Weak-Words-Wait"})
    assert settings.turn_end_rules_off == ("vad-confirm", "weak-words-wait")
    with pytest.raises(SettingsError, match="TURN_END_RULES_OFF"):
        Settings.from_env({"TURN_END_RULES_OFF": "all"})


class LaggingWords:
    """The recogniser's hypothesis as it grows: `first` until the silence reaches `silent`
    frames, then `then` (at 96 ms it often lacks the last word: "to my" for "tonight")."""

    def __init__(self, first: str, then: str, silent: int):
        self.first, self.then, self.silent = first, then, silent

    def __call__(self, silent: int) -> str:
        return self.then if silent >= self.silent else self.first


def test_words_that_vetoed_the_first_look_are_asked_again_before_the_second_look():
    """At 96 ms the voice sounds finished (0.98) but the recogniser has "... close to my"
    (P(end) 0.006); by 192 ms it has "tonight": the turn ends then, on the first look's
    answer (the model is not asked again). Before (`words-again` off, and the middle look
    that came after it) it waited for the second look at 480 ms."""
    FakeModel.answers = [0.98]
    frames = [QUIET] * 5 + [LOUD] * 20 + [QUIET] * 40
    words = LaggingWords("what time does the store close to my", "what time does the store "
                         "close tonight", silent=5)  # fmt: skip
    detector_events = run(frames, SETTINGS, words)
    (end,) = ends(detector_events)
    assert end * 32 == 192  # the default words_again_ms
    looks = [e for e in detector_events if isinstance(e, WordsWanted)]
    assert len(looks) == 2  # the first look's words, and once more
    FakeModel.answers = [0.98]
    off = rules_off(["words-again", "middle-look"])
    (before,) = ends(run(frames, replace(SETTINGS, **off), words))
    assert before * 32 == 480


def test_words_asked_again_that_still_do_not_end_a_sentence_keep_the_turn_open():
    """A hesitation: "a table for" stays "a table for"; asking again changes nothing, and the
    voice coming back at 400 ms goes on in the same turn."""
    FakeModel.answers = [0.98, 0.2]
    frames = [QUIET] * 5 + [LOUD] * 20 + [QUIET] * 12 + [LOUD] * 10 + [QUIET] * 40
    words = LaggingWords("i would like a table for", "i would like a table for", silent=5)
    events = run(frames, SETTINGS, words)
    assert [type(e) for e in events].count(SpeechStarted) == 1
    assert len(ends(events)) == 1


def test_a_first_look_just_short_of_sure_is_asked_again_at_the_middle_look():
    """The browser's "What time is it?": at 96 ms the model says 0.945 (under 0.95) and the
    words end a sentence only weakly ("is it", P(end) 0.115 < 0.2), so the first look does not
    end the turn and the words asked again change nothing; at the 480 ms look the weak words
    hold it to 700 ms. The middle look asks the model again at 256 ms on the audio then (0.975
    > 0.95, and the words >= 0.075): the turn ends there. Before (`middle-look` off), at 704."""
    FakeModel.answers = [0.945, 0.975]
    frames = [QUIET] * 5 + [LOUD] * 20 + [QUIET] * 40
    events = run(frames, SETTINGS, "what time is it")
    (end,) = ends(events)
    assert end * 32 == SETTINGS.middle_look_ms == 256
    FakeModel.answers = [0.945, 0.975]
    (before,) = ends(
        run(frames, replace(SETTINGS, **rules_off(["middle-look"])), "what time is it")
    )
    assert before * 32 == 704  # the first 32 ms frame at or past weak_words_end_ms (700)


def test_the_middle_look_keeps_a_higher_bar_than_the_first_looks_clear_words_discount():
    """At 256 ms the voice of a hesitation sounds more finished than at 96 ms: clear words
    lower the bar there less than at the first look (0.7 with words that end a sentence
    clearly, P(end) 0.30, stays open: under 0.8), and after a number the words must end a
    sentence clearly, as at the first look ("twenty five men", P(end) 0.135, the model 0.99)."""
    FakeModel.answers = [0.3, 0.7, 0.3]
    frames = [QUIET] * 5 + [LOUD] * 20 + [QUIET] * 12 + [LOUD] * 10 + [QUIET] * 40
    events = run(frames, SETTINGS, "what is the weather like today")
    assert [type(e) for e in events].count(SpeechStarted) == 1
    FakeModel.answers = [0.3, 0.99, 0.3]
    events = run(frames, SETTINGS, "set a timer for twenty five men")  # P(end) < 0.2
    assert [type(e) for e in events].count(SpeechStarted) == 1


def test_the_middle_look_setting_is_bounded():
    with pytest.raises(ValueError, match="middle_look_ms"):
        TurnSettings(middle_look_ms=64)  # before the first look
    with pytest.raises(ValueError, match="middle_look_ms"):
        TurnSettings(middle_look_ms=2000)  # after the fallback
    assert TurnSettings(middle_look_ms=0).middle_look_ms == 0


def test_clear_words_for_a_voice_less_than_sure_must_be_heard_again_before_the_turn_ends():
    """Held-out "Please wake me up at, six fifteen" with the page's 40 ms chunks: at 96 ms the
    voice is fairly sure (0.69) and the words, lacking "at" (the chunk had not brought it),
    end a sentence clearly ("please wake me up", P(end) 0.21): the turn was cut there. Now
    such a finish waits for the words asked again at 128 ms (a chunk later): "... up at" does
    not end a sentence, and the voice back at 384 ms goes on in the same turn. Before
    (`clear-words-confirm` off) it was cut."""
    FakeModel.answers = [0.69]
    frames = [QUIET] * 5 + [LOUD] * 20 + [QUIET] * 12 + [LOUD] * 10 + [QUIET] * 40
    words = LaggingWords("please wake me up", "please wake me up at", silent=4)
    events = run(frames, SETTINGS, words)
    assert [type(e) for e in events].count(SpeechStarted) == 1
    before = run(frames, replace(SETTINGS, **rules_off(["clear-words-confirm"])), words)
    assert [type(e) for e in before].count(SpeechStarted) == 2
    assert ends(before)[0] * 32 == 96


def test_clear_words_heard_again_end_the_turn_at_their_own_shorter_silence():
    """ "Thank you very much." (the voice 0.71 at 96 ms, P(end) 0.23): the words asked again
    say the same, so the turn ends at `clear_words_confirm_ms` (CONFIRM_MS), sooner than the
    192 ms at which words that vetoed a voice are asked again (it was 192 too: every turn
    ending on clear words waited for it)."""
    FakeModel.answers = [0.71]
    frames = [QUIET] * 5 + [LOUD] * 20 + [QUIET] * 40
    (end,) = ends(run(frames, SETTINGS, "thank you very much"))
    assert end * 32 == CONFIRM_MS < SETTINGS.words_again_ms == 192
    assert SETTINGS.clear_words_confirm_ms == CONFIRM_MS
    FakeModel.answers = [0.71]
    (later,) = ends(
        run(frames, replace(SETTINGS, clear_words_confirm_ms=192), "thank you very much")
    )
    assert later * 32 == 192
    FakeModel.answers = [0.71]
    (at_once,) = ends(run(frames, replace(SETTINGS, **rules_off(["clear-words-confirm"])),
                          "thank you very much"))  # fmt: skip
    assert at_once * 32 == 96


def test_the_clear_words_confirm_setting_is_bounded_and_turned_off_by_zero():
    with pytest.raises(ValueError, match="clear_words_confirm_ms"):
        TurnSettings(clear_words_confirm_ms=64)  # before the first look
    with pytest.raises(ValueError, match="clear_words_confirm_ms"):
        TurnSettings(clear_words_confirm_ms=2000)  # after the fallback
    assert RULES_OFF["clear-words-confirm"] == {"clear_words_confirm_ms": 0}
    assert Settings.from_env({}).turn_end_clear_words_confirm_ms == CONFIRM_MS
    name = "TURN_END_CLEAR_WORDS_CONFIRM_MS"
    assert Settings.from_env({name: "0"}).turn_end_clear_words_confirm_ms == 0
    assert Settings.from_env({name: "160"}).turn_end_clear_words_confirm_ms == 160
    for bad in ("50", "1001", "-1", "soon"):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: bad})


def test_one_or_two_clear_words_do_not_lower_the_first_looks_bar():
    """ "Yes, that is right.": at the comma the recogniser has "yes", which ends a sentence
    clearly (P(end) 0.22), and the voice is fairly sure (0.91, under 0.95). Three or more such
    words would end the turn at the first look ("thank you very much", below); one or two often
    begin a longer answer, so the voice back at 320 ms goes on in the same turn."""
    frames = [QUIET] * 5 + [LOUD] * 10 + [QUIET] * 10 + [LOUD] * 10 + [QUIET] * 40
    FakeModel.answers = [0.91, 0.3, 0.3]
    events = run(frames, SETTINGS, "yes")
    assert [type(e) for e in events].count(SpeechStarted) == 1
    FakeModel.answers = [0.91, 0.3, 0.3]
    events = run(frames, SETTINGS, "thank you very much")
    assert [type(e) for e in events].count(SpeechStarted) == 2
    assert ends(events)[0] * 32 == CONFIRM_MS


def test_the_middle_look_does_not_end_a_turn_of_one_or_two_words():
    """ "No, thank you.": at the comma the recogniser has "nope" (P(end) 0.34) and by 256 ms
    the voice sounds finished (0.966); one or two words often begin a longer answer, so the
    middle look leaves it to the second, and the voice back at 320 ms goes on."""
    FakeModel.answers = [0.945, 0.966, 0.2]
    frames = [QUIET] * 5 + [LOUD] * 10 + [QUIET] * 10 + [LOUD] * 10 + [QUIET] * 40
    events = run(frames, SETTINGS, "nope")
    assert [type(e) for e in events].count(SpeechStarted) == 1


def test_clear_words_waiting_to_be_heard_again_are_not_lost_to_the_middle_look():
    """Under load the first look's answer comes after 256 ms of silence ("Thank you very
    much.": 0.69 at 96 ms, clear words): the words are asked again first, and the turn ends
    on them, not left to the middle look (0.75, under the 0.8 clear words need there) and the
    looks after it."""
    FakeModel.answers = [0.69, 0.75]
    frames = [QUIET] * 5 + [LOUD] * 20 + [QUIET] * 40
    detector, silent, end = TurnDetector(SETTINGS), 0, None
    wanted: list[WordsWanted] = []
    for frame in frames:
        silent = silent + 1 if frame != LOUD else 0
        pending = detector.feed(frame)
        if silent == 9:  # 288 ms: the first look's words come only now
            for event in wanted:
                detector.hint("thank you very much", event.look)
            wanted.clear()
            pending += detector.feed(b"")
        while pending:
            event = pending.pop(0)
            if isinstance(event, WordsWanted):
                if silent < 9:
                    wanted.append(event)
                    continue
                detector.hint("thank you very much", event.look)
                pending += detector.feed(b"")
            if isinstance(event, SpeechEnded) and end is None:
                end = silent
    assert end is not None and end * 32 < SETTINGS.second_look_ms
    assert [look.kind for look in detector.looks] == ["first", "first"]


def test_clear_words_let_a_less_sure_voice_end_the_turn_at_the_middle_look():
    """The browser's "Thank you very much.": at 96 ms the voice scores 0.539 (under the 0.6
    clear words need there), at 256 ms 0.845 (under 0.95), at 480 ms 0.959. Its words end a
    sentence clearly ("thank you very much", P(end) 0.23 >= 0.2), which now lowers the middle
    look's bar to 0.8: the turn ends at 256 ms. Before (`middle-clear-words` off), at 480."""
    frames = [QUIET] * 5 + [LOUD] * 20 + [QUIET] * 40
    FakeModel.answers = [0.539, 0.845, 0.959]
    (end,) = ends(run(frames, SETTINGS, "thank you very much"))
    assert end * 32 == SETTINGS.middle_look_ms == 256
    FakeModel.answers = [0.539, 0.845, 0.959]
    off = replace(SETTINGS, **rules_off(["middle-clear-words"]))
    (before,) = ends(run(frames, off, "thank you very much"))
    assert before * 32 == 480


@pytest.mark.parametrize(
    ("voice", "words"),
    [
        (0.75, "what is the weather like today"),  # clear words, the voice under 0.8
        (0.9, "what can you do"),  # the voice over 0.8, the words end a sentence weakly
        (0.9, "thank you"),  # clear words, but two: they often begin a longer answer
        (0.9, "set a timer for twenty five men"),  # after a number, not clear enough
    ],
)
def test_the_middle_looks_clear_words_discount_needs_the_voice_and_clear_words(voice, words):
    """A pause of 384 ms inside the sentence, then the voice again: the middle look at 256 ms
    must not end the turn unless the voice passes 0.8 and three words or more end a sentence
    clearly (P(end) >= 0.2, as the first look's discount needs)."""
    FakeModel.answers = [0.3, voice, 0.3]
    frames = [QUIET] * 5 + [LOUD] * 20 + [QUIET] * 12 + [LOUD] * 10 + [QUIET] * 40
    events = run(frames, SETTINGS, words)
    assert [type(e) for e in events].count(SpeechStarted) == 1


def test_the_middle_clear_words_setting_is_bounded():
    with pytest.raises(ValueError, match="middle_clear_end_model_min"):
        TurnSettings(middle_clear_end_model_min=0.4)
    with pytest.raises(ValueError, match="middle_clear_end_model_min"):
        TurnSettings(middle_clear_end_model_min=1.5)
    assert RULES_OFF["middle-clear-words"] == {"middle_clear_end_model_min": 1.0}
    name = "TURN_END_MIDDLE_CLEAR_WORDS_MIN"
    assert Settings.from_env({}).turn_end_middle_clear_words_min == 0.8
    assert Settings.from_env({name: "0.85"}).turn_end_middle_clear_words_min == 0.85
    for bad in ("0.3", "1.01", "nan", "high"):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: bad})
    from server.pipeline.embedded import EmbeddedPipeline  # what the sessions are given

    given = EmbeddedPipeline(Settings.from_env({name: "0.85"}), http=None).turn_settings
    assert given.middle_clear_end_model_min == 0.85
    off = Settings.from_env({name: "0.85", "TURN_END_RULES_OFF": "middle-clear-words"})
    assert EmbeddedPipeline(off, http=None).turn_settings.middle_clear_end_model_min == 1.0


def test_words_that_veto_a_sure_voice_at_the_second_look_hold_it_only_to_800_ms():
    """ "Hello, how are you?" misheard "oh pa or you" (P(end) 0.017): every look's words veto
    an end, and the turn waited for the 1 s fallback. At the second look a voice the model is
    sure of (0.99 > 0.95) now ends the turn at `vetoed_words_end_ms` (800 ms) of silence.
    Before (`vetoed-words-wait` off), at 1000 ms."""
    frames = [QUIET] * 5 + [LOUD] * 20 + [QUIET] * 40
    FakeModel.answers = [0.5, 0.6, 0.99]
    (end,) = ends(run(frames, SETTINGS, "oh pa or you"))
    assert end * 32 == 800 == SETTINGS.vetoed_words_end_ms
    FakeModel.answers = [0.5, 0.6, 0.99]
    off = replace(SETTINGS, **rules_off(["vetoed-words-wait"]))
    (before,) = ends(run(frames, off, "oh pa or you"))
    assert before * 32 == 1024  # the first 32 ms frame at or past max_silence_ms


def test_a_hesitation_whose_words_veto_an_end_goes_on_within_800_ms():
    """ "I need a table for, ... four": at the second look the voice sounds finished (0.99)
    and "a table for" vetoes it; the voice back at 736 ms of silence goes on in the same turn.
    A voice the model is less sure of (0.93) is held to the fallback, as before."""
    frames = [QUIET] * 5 + [LOUD] * 20 + [QUIET] * 23 + [LOUD] * 10 + [QUIET] * 40
    FakeModel.answers = [0.5, 0.6, 0.99, 0.5, 0.6, 0.99]
    events = run(frames, SETTINGS, "i need a table for")
    assert [type(e) for e in events].count(SpeechStarted) == 1
    frames = [QUIET] * 5 + [LOUD] * 20 + [QUIET] * 40
    FakeModel.answers = [0.5, 0.6, 0.93]
    (end,) = ends(run(frames, SETTINGS, "oh pa or you"))
    assert end * 32 == 1024


def test_the_vetoed_words_wait_is_bounded():
    with pytest.raises(ValueError, match="vetoed_words_end_ms"):
        TurnSettings(vetoed_words_end_ms=1500)  # after the fallback
    with pytest.raises(ValueError, match="vetoed_words_end_ms"):
        TurnSettings(vetoed_words_end_ms=-1)
    assert RULES_OFF["vetoed-words-wait"] == {"vetoed_words_end_ms": 0}


def test_the_first_look_asked_ahead_of_its_silence_ends_the_turn_no_earlier():
    """With `look_ahead_ms` the first look is asked 32 ms (a Silero frame) before its 96 ms of
    silence, on the audio then, so the model works while the last frame arrives; its
    "finished" still ends the turn only at 96 ms: a voice back at 64 ms goes on. Before
    (`look-ahead` off) the model heard the 96 ms."""
    ahead = replace(SETTINGS, look_ahead_ms=32)
    frames = [QUIET] * 5 + [LOUD] * 20 + [QUIET] * 10
    assert ends(run(frames, ahead, "what time is it")) == [3]  # 96 ms, as before
    assert ends(run(frames, replace(ahead, **rules_off(["look-ahead"])), "what time is it")) == [3]
    early, before = FakeModel.heard  # the audio the look heard: one frame less, ahead
    assert before - early == FRAME
    FakeModel.heard = []
    frames = [QUIET] * 5 + [LOUD] * 20 + [QUIET] * 2 + [LOUD] * 5 + [QUIET] * 10
    events = run(frames, ahead, "what time is it")
    assert ends(events) == [3]  # one turn: "finished" at 64 ms did not end it there
    assert FakeModel.heard[0] == early  # asked at 64 ms of silence


def test_the_words_of_a_look_asked_ahead_are_those_at_its_own_silence():
    """The model runs ahead, the words do not: asked at 64 ms of the stop inside "min-utes"
    the recogniser heard "fifteen min" (a clear end), at 96 ms "fifteen minute" (none)."""
    asked_at = []

    def words(silent: int) -> str:
        asked_at.append(silent)
        return "what time is it"

    frames = [QUIET] * 5 + [LOUD] * 20 + [QUIET] * 10
    assert ends(run(frames, replace(SETTINGS, look_ahead_ms=32), words)) == [3]
    assert asked_at == [3]  # 96 ms, not at the look's 64


def test_the_look_ahead_is_bounded_and_configured():
    with pytest.raises(ValueError, match="look_ahead_ms"):
        TurnSettings(look_ahead_ms=96)  # at or past the look's own silence
    with pytest.raises(ValueError, match="look_ahead_ms"):
        TurnSettings(look_ahead_ms=-1)
    assert Settings.from_env({}).turn_end_look_ahead_ms == 0
    assert Settings.from_env({"TURN_END_LOOK_AHEAD_MS": "32"}).turn_end_look_ahead_ms == 32
    with pytest.raises(SettingsError, match="TURN_END_LOOK_AHEAD_MS"):
        Settings.from_env({"TURN_END_LOOK_AHEAD_MS": "96"})
    assert RULES_OFF["look-ahead"] == {"look_ahead_ms": 0}
