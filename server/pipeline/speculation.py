"""Speculative answers: the agent starts on the user's words at a pause, before the turn is over.

The endpointer's wait (a silence long enough to be sure, or the turn-end model's answer) is the
largest part of voice-to-voice latency, and the agent's first audio (webhook, then the first
sentence's synthesis) follows it. At a pause (`TurnSettings.pause_ms`, 300 ms of silence) the
session takes the interim transcript; if it looks like a whole utterance (`looks_complete`),
it calls the agent at once with a `message` marked `speculative: true` and synthesises the
first sentence, sending nothing (a SPECULATING `AgentTurn`, agent_turn.py). Then:

- the turn ends with the same words (`same_words`): the answer is released and its first audio
  goes out at once — the webhook and the first synthesis were done during the silence;
- the user goes on, or the final transcript differs: the turn is cancelled as a unit (nothing
  of it reached the client or the history) and the agent is sent `message.cancel` with the
  speculative message's `turn_id`; a differing transcript is then answered as usual.

It costs an agent one extra webhook call (and its model's tokens) per abandoned speculation,
and one `message.cancel`; `SPECULATIVE_ANSWERS` is `auto` by default: on for the built-in demo
agent, off for an external one unless set to `on` (docs/protocol.md §4, README).

Why 300 ms and not the turn-end model's first look (96 ms): pocketsphinx's periodic interim
transcript (one per 300 ms of audio) lags the voice. Measured on 8 Piper questions fed 20 ms at
a time, the interim at 160 ms of silence matched the final transcript for 2 ("what is the date
to", "what time"), at 300 ms for 7, at 450 ms for 8.
A speculation on lagging words is discarded at the end and costs a call for nothing. So the
speculation serves the turns the model doubts (ended by its second look at 450 ms, or the 1 s
fallback) and the timer-only mode, the slow tail of endpointing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MODES = ("auto", "on", "off")

# Words an English utterance seldom ends on: a speculation on "book a table for" is wasted.
# (The turn-end decision asks the recogniser's language model instead: sentence_end.py.)
_OPEN_ENDINGS = frozenset({
    "a", "an", "the", "and", "or", "but", "so", "because", "if", "than", "whose", "to", "of",
    "for", "from", "with", "without", "about", "at", "by", "into", "onto", "as", "my", "your",
    "his", "her", "its", "our", "their", "these", "those", "some", "every", "very", "um", "uh",
    "er", "erm", "hmm", "near", "is", "are", "was", "were", "am",
})  # fmt: skip
_WORD = re.compile(r"[a-z0-9']+")


def words_of(text: str) -> list[str]:
    """Lower-case words without punctuation: how two transcripts are compared."""
    return _WORD.findall(text.lower())


def ends_open(text: str) -> bool:
    """Do these words end on one an utterance seldom ends on ("a table for")?"""
    words = words_of(text)
    return bool(words) and words[-1] in _OPEN_ENDINGS


def looks_complete(text: str) -> bool:
    """Do these words (an interim transcript at a pause) look like a whole utterance?

    A cheap check on the text; the audio's own judgement is the turn-end model's, which still
    decides when the turn ends. Single words and trailing function words are not speculated on.
    """
    words = words_of(text)
    return len(words) >= 2 and words[-1] not in _OPEN_ENDINGS


def same_words(a: str, b: str) -> bool:
    return words_of(a) == words_of(b)


def speculation_enabled(mode: str, external_agent: bool) -> bool:
    """`auto`: on only for the built-in demo agent (an external agent pays for each call)."""
    if mode not in MODES:
        raise ValueError(f"speculative answers must be one of {MODES}, not {mode!r}")
    return mode == "on" or (mode == "auto" and not external_agent)


@dataclass
class Speculation:
    """A speculative agent turn and the words of the user turn it answers."""

    user_turn: object  # the session's UserTurn
    text: str
    agent: object  # the SPECULATING AgentTurn
