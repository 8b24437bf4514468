"""What the demo agent says: pure logic, no I/O, so it is tested directly.

It acknowledges what it heard and recognises a few intents (time, date, help, greetings,
thanks, goodbye). It uses the conversation history the embedded pipeline sends, so a resumed
session is greeted with what came before.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Clock = Callable[[], dt.datetime]


@dataclass
class Answer:
    sentences: list[str]
    data: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


INTENTS: list[tuple[str, re.Pattern]] = [
    ("time", re.compile(r"\b(time|clock|o'clock)\b")),
    ("date", re.compile(r"\b(date|day is it|today)\b")),
    ("help", re.compile(r"\b(help|what can you do|how does this work)\b")),
    ("thanks", re.compile(r"\b(thanks|thank you)\b")),
    ("goodbye", re.compile(r"\b(bye|goodbye|see you)\b")),
    ("greeting", re.compile(r"\b(hello|hi|hey|good (morning|afternoon|evening)|how are you)\b")),
]


def intent_of(text: str) -> str:
    lowered = text.lower()
    for name, pattern in INTENTS:
        if pattern.search(lowered):
            return name
    return "other"


def clock_time(now: dt.datetime) -> str:
    return f"{now.strftime('%I').lstrip('0')}:{now.strftime('%M %p')}"


def user_turns(history: list[dict]) -> list[str]:
    return [turn.get("text", "") for turn in history if turn.get("role") == "user"]


def welcome(event: dict) -> Answer:
    history = event.get("history") or []
    said = user_turns(history)
    if event.get("resumed") and said:
        count = len(said)
        turns = "one earlier turn" if count == 1 else f"{count} earlier turns"
        return Answer(
            [
                f"Welcome back! We have {turns} together.",
                f"Last time you said: {said[-1]}.",
            ]
        )
    return Answer(
        [
            "Hi! I'm the demo agent, running right here on this machine.",
            "Ask me the time, or say help.",
        ]
    )


def reply(event: dict, now: Clock = dt.datetime.now) -> Answer:
    """The answer to one webhook event."""
    kind = event.get("type")
    if kind == "session.start":
        return welcome(event)
    if kind == "data":
        return Answer(["Thanks, I got the data you sent."], {"received": event.get("data")})
    if kind != "message":
        return Answer([])
    text = (event.get("text") or "").strip()
    if not text:
        return Answer(["Sorry, I didn't catch that."])
    intent = intent_of(text)
    turn = len(user_turns(event.get("history") or [])) + 1
    heard = f"You said: {text}."
    current = now()
    sentences = {
        "time": [heard, f"It's {clock_time(current)}."],
        "date": [heard, f"Today is {current.strftime('%A, %B')} {current.day}."],
        "help": [
            heard,
            "I can tell you the time or the date, and I repeat what I heard.",
            "Talk any time; I stop when you interrupt me.",
        ],
        "thanks": [heard, "You're welcome!"],
        "goodbye": [heard, "Goodbye, talk to you soon."],
        "greeting": [heard, "Hello! I'm doing well, thanks for asking."],
        "other": [heard, "I'm a simple demo agent, so that is all I can do with it."],
    }[intent]
    return Answer(sentences, {"heard": text, "intent": intent, "turn": turn})
