"""What the demo agent says: pure logic, no I/O, so it is tested directly with a fixed clock.

It acknowledges what it heard ("You said: ...") — which makes speech recognition errors visible
in a demo — and recognises a few intents: time, date, help, greeting, thanks, goodbye. It reads
the conversation history the embedded pipeline sends (docs/protocol.md §4), so a resumed
session is welcomed back with what came before, and each answer's data carries the turn number.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Clock = Callable[[], dt.datetime]

WELCOME = ["Hi! I'm the demo agent running on this machine.", "Ask me the time, or say help."]
MISSED = "Sorry, I didn't catch that."

# First match wins, so "hi, what time is it" is a time question, not a greeting.
INTENTS: list[tuple[str, re.Pattern[str]]] = [
    ("time", re.compile(r"\b(time|clock|o'clock)\b")),
    ("date", re.compile(r"\b(date|what day|which day|today)\b")),
    ("help", re.compile(r"\b(help|what can you do|how does this work)\b")),
    ("thanks", re.compile(r"\b(thanks|thank you|cheers)\b")),
    ("goodbye", re.compile(r"\b(bye|goodbye|see you|good night)\b")),
    ("greeting", re.compile(r"\b(hello|hi|hey|good (morning|afternoon|evening)|how are you)\b")),
]


@dataclass
class Answer:
    """Sentences to send as separate `response.tts` events, and an optional `response.data`."""

    sentences: list[str]
    data: dict[str, Any] | None = None


def intent_of(text: str) -> str:
    lowered = text.lower()
    for name, pattern in INTENTS:
        if pattern.search(lowered):
            return name
    return "other"


def clock_time(now: dt.datetime) -> str:
    """`3:41 PM`: how the time is said, without the zero-padding strftime adds."""
    return f"{now.hour % 12 or 12}:{now.minute:02d} {'AM' if now.hour < 12 else 'PM'}"


def quoted(text: str) -> str:
    """`text` as the end of a sentence: one full stop, not two."""
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."


def user_turns(history: Any) -> list[str]:
    """What the user said in earlier turns, oldest first; tolerant of a malformed history."""
    if not isinstance(history, list):
        return []
    return [
        str(turn.get("text") or "")
        for turn in history
        if isinstance(turn, dict) and turn.get("role") == "user"
    ]


def welcome(event: dict) -> Answer:
    said = [text for text in user_turns(event.get("history")) if text.strip()]
    if event.get("resumed") is True and said:
        count = len(said)
        turns = "one earlier turn" if count == 1 else f"{count} earlier turns"
        return Answer([f"Welcome back! We had {turns}.", f"Last time you said: {quoted(said[-1])}"])
    return Answer(list(WELCOME))


def answer_message(text: str, history: Any, now: Clock) -> Answer:
    text = text.strip()
    if not text:
        return Answer([MISSED])
    intent = intent_of(text)
    heard = f"You said: {quoted(text)}"
    if intent == "time":
        sentences = [heard, f"It's {clock_time(now())}."]
    elif intent == "date":
        today = now()
        sentences = [heard, f"Today is {today.strftime('%A, %B')} {today.day}."]
    elif intent == "help":
        sentences = [
            heard,
            "I can tell you the time or the date, and I repeat what I heard.",
            "You can interrupt me whenever you like.",
        ]
    elif intent == "thanks":
        sentences = [heard, "You're welcome!"]
    elif intent == "goodbye":
        sentences = [heard, "Goodbye, talk to you soon."]
    elif intent == "greeting":
        asked = "how are you" in text.lower()
        sentences = [heard, "Hello! I'm doing well, thanks." if asked else "Hello there!"]
    else:
        sentences = [heard, "I'm a simple demo agent, so I can only repeat it back."]
    turn = len(user_turns(history)) + 1
    return Answer(sentences, {"heard": text, "intent": intent, "turn": turn})


def reply(event: dict, now: Clock = dt.datetime.now) -> Answer:
    """The answer to one webhook event (a parsed webhook request body, docs/protocol.md §3)."""
    kind = event.get("type")
    if kind == "session.start":
        return welcome(event)
    if kind == "message":
        text = event.get("text")
        return answer_message(text if isinstance(text, str) else "", event.get("history"), now)
    if kind == "data":
        return Answer(["Thanks, I got the data you sent."], {"received": event.get("data")})
    return Answer([])  # session.update, session.end, and types this agent does not know
