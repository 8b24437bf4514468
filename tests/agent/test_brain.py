"""What the demo agent says, with a fixed clock."""

from __future__ import annotations

import datetime as dt

from server.agent.brain import intent_of, reply

NOON = dt.datetime(2026, 11, 24, 15, 41)


def message(text: str, history: list | None = None) -> dict:
    return {"type": "message", "text": text, "history": history or []}


def test_intents():
    assert intent_of("what time is it") == "time"
    assert intent_of("what is the date today") == "date"
    assert intent_of("can you help me") == "help"
    assert intent_of("thank you very much") == "thanks"
    assert intent_of("hello how are you") == "greeting"
    assert intent_of("goodbye") == "goodbye"
    assert intent_of("the cat sat on the mat") == "other"


def test_time_answer_acknowledges_and_tells_the_time():
    answer = reply(message("what time is it"), now=lambda: NOON)
    assert answer.sentences == ["You said: what time is it.", "It's 3:41 PM."]
    assert answer.data == {"heard": "what time is it", "intent": "time", "turn": 1}


def test_turn_counts_the_history_and_empty_text_is_a_polite_miss():
    history = [{"role": "user", "text": "hi"}, {"role": "assistant", "text": "Hello!"}]
    assert reply(message("what is the date", history), now=lambda: NOON).data["turn"] == 2
    assert "Tuesday, November 24" in " ".join(reply(message("date"), now=lambda: NOON).sentences)
    assert reply(message("  ")).sentences == ["Sorry, I didn't catch that."]


def test_welcome_and_welcome_back():
    first = reply({"type": "session.start", "history": [], "resumed": False})
    assert "demo agent" in first.sentences[0]
    back = reply(
        {
            "type": "session.start",
            "resumed": True,
            "history": [{"role": "user", "text": "my name is Ada"}],
        }
    )
    assert back.sentences[0].startswith("Welcome back")
    assert "my name is Ada" in back.sentences[1]


def test_data_events_are_acknowledged():
    answer = reply({"type": "data", "data": {"clicked": "help"}})
    assert answer.sentences and answer.data == {"received": {"clicked": "help"}}
