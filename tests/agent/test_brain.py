"""What the demo agent says, with a fixed clock."""

from __future__ import annotations

import datetime as dt

import pytest

from server.agent.brain import WELCOME, clock_time, intent_of, reply

AFTERNOON = dt.datetime(2026, 11, 24, 15, 41)


def message(text, history: list | None = None) -> dict:
    return {"type": "message", "text": text, "history": history or []}


def say(text: str, history: list | None = None) -> list[str]:
    return reply(message(text, history), now=lambda: AFTERNOON).sentences


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("what time is it", "time"),
        ("hi what time is it", "time"),
        ("what is the date today", "date"),
        ("what day is it", "date"),
        ("can you help me", "help"),
        ("thank you very much", "thanks"),
        ("hello how are you", "greeting"),
        ("Hey", "greeting"),
        ("goodbye", "goodbye"),
        ("this is a thing", "other"),  # "hi" inside a word is no greeting
        ("the cat sat on the mat", "other"),
    ],
)
def test_intents(text, intent):
    assert intent_of(text) == intent


def test_time_answer_acknowledges_and_tells_the_time():
    answer = reply(message("what time is it"), now=lambda: AFTERNOON)
    assert answer.sentences == ["You said: what time is it.", "It's 3:41 PM."]
    assert answer.data == {"heard": "what time is it", "intent": "time", "turn": 1}


def test_clock_time_has_no_padding_and_midnight_is_twelve():
    assert clock_time(dt.datetime(2026, 1, 1, 0, 5)) == "12:05 AM"
    assert clock_time(dt.datetime(2026, 1, 1, 9, 0)) == "9:00 AM"
    assert clock_time(dt.datetime(2026, 1, 1, 12, 30)) == "12:30 PM"


def test_every_intent_answers_in_two_or_three_sentences():
    for text in ("what's the time", "date", "help", "thanks", "bye", "hello", "blue sky"):
        sentences = say(text)
        assert 2 <= len(sentences) <= 3, text
        assert sentences[0] == f"You said: {text}."
    assert say("what is the date") == [
        "You said: what is the date.",
        "Today is Tuesday, November 24.",
    ]
    assert say("goodbye")[-1] == "Goodbye, talk to you soon."


def test_punctuation_already_there_is_not_doubled():
    assert say("What time is it?")[0] == "You said: What time is it?"


def test_turn_counts_only_the_users_earlier_turns():
    history = [{"role": "user", "text": "hi"}, {"role": "assistant", "text": "Hello!"}]
    answer = reply(message("what is the date", history), now=lambda: AFTERNOON)
    assert answer.data["turn"] == 2


def test_empty_or_missing_text_is_a_polite_miss():
    for text in ("", "   ", None, 42):
        answer = reply(message(text))
        assert answer.sentences == ["Sorry, I didn't catch that."]


def test_welcome_and_welcome_back():
    assert reply({"type": "session.start", "history": [], "resumed": False}).sentences == WELCOME
    assert " ".join(WELCOME) == (
        "Hi! I'm the demo agent running on this machine. Ask me the time, or say help."
    )
    history = [
        {"role": "user", "text": "hello"},
        {"role": "assistant", "text": "Hello there!"},
        {"role": "user", "text": "my name is Ada"},
    ]
    back = reply({"type": "session.start", "resumed": True, "history": history}).sentences
    assert back == ["Welcome back! We had 2 earlier turns.", "Last time you said: my name is Ada."]
    # Resumed with nothing said yet, or history without `resumed`: a plain welcome.
    assert reply({"type": "session.start", "resumed": True, "history": []}).sentences == WELCOME
    assert reply({"type": "session.start", "history": history}).sentences == WELCOME


def test_a_malformed_history_does_not_break_the_agent():
    for history in ("nonsense", [1, None, {"role": "user"}], {"role": "user"}):
        assert reply({"type": "session.start", "resumed": True, "history": history}).sentences
        assert reply({"type": "message", "text": "hi", "history": history}).data["turn"] >= 1


def test_data_events_are_acknowledged_and_other_events_need_no_words():
    answer = reply({"type": "data", "data": {"clicked": "help"}})
    assert len(answer.sentences) == 1 and answer.data == {"received": {"clicked": "help"}}
    assert reply({"type": "session.update"}).sentences == []
    assert reply({"type": "something.new"}).sentences == []
