"""Sentence splitting, the pipeline's one place for it: streamed text in, sentences out.

The agent's words arrive in pieces (one `response.tts` per sentence, or a token at a time);
synthesis starts as soon as a sentence is whole, so the first audio does not wait for the whole
answer. The first sentence of an answer has its opening phrase cut off (`first_clause`), so the
very first audio waits only for that phrase's inference: up to its first clause break (a comma,
colon, semicolon or dash) when both sides have at least `phrase_words` words ("You said:" |
"What time is it?"; TTS_FIRST_PHRASE_WORDS, when the voice is idle or the rest is made beside
its phrase: agent_turn.py), or, with `phrase_words` 0 (the rule before), only in a sentence
over `LONG_TEXT_WORDS` at a clause of `MIN_CLAUSE_WORDS`. Later sentences are left whole (every
cut ends a Piper inference with the phrase's own tone: once, where it buys time to the first
audio).

Linear in its input, whatever the input: each character is scanned once (the search resumes
where it stopped, looking back only over a possible partial boundary), the word before a full
stop is read from a short look-back rather than the whole pending text, and a "sentence" that
never ends is cut at `MAX_SENTENCE_CHARS` (at a space when there is one). 800 KB of "Mr. " is
split in one pass (tests/pipeline/test_sentences.py counts the characters scanned).
"""

from __future__ import annotations

import re

ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "e.g", "i.e", "approx"}
_BOUNDARY = re.compile(r"[.!?]+[\"')\]]*\s+")
_TAIL = set(".!?\"')] \t\r\n")  # characters a boundary still being written may end with
WORD_LOOKBACK = 12  # longer than any abbreviation
TAIL_LOOKBACK = 64  # a boundary may still be growing over at most this many last characters
MAX_SENTENCE_CHARS = 600  # a longer run without a boundary is cut, so the buffer stays bounded

_CLAUSE_END = re.compile(r"[,;:]\s+|\s+[-–—]+\s+")
LONG_TEXT_WORDS = 12  # a first sentence longer than this has its first clause synthesised alone
MIN_CLAUSE_WORDS = 4  # ...if that clause has at least this many words (no "Well," alone)


def _is_abbreviation(text: str, dot: int) -> bool:
    """Whether the word ending at `text[dot]` (a full stop) is a known abbreviation."""
    before = text[max(0, dot - WORD_LOOKBACK) : dot]
    word = before.rsplit(maxsplit=1)[-1:] or [""]
    return word[0].strip("\"'([").lower() in ABBREVIATIONS


class SentenceSplitter:
    """Cuts streamed text into sentences (`feed`), then the rest at the end (`flush`)."""

    def __init__(self, first_clause_apart: bool = True, phrase_words: int = 0) -> None:
        self._buffer = ""
        self._scan_from = 0  # boundaries before this offset of the buffer were already judged
        self._first = first_clause_apart
        self._phrase_words = phrase_words  # `first_clause`'s rule
        self.first_parts = 0  # the pieces the first sentence was cut into (0: none yet)

    def feed(self, text: str) -> list[str]:
        buffer = self._buffer + text  # short: whole sentences leave it at once
        sentences: list[str] = []
        start = 0
        for match in _BOUNDARY.finditer(buffer, self._scan_from):
            if match.group().startswith(".") and _is_abbreviation(buffer, match.start()):
                continue
            self._emit_span(buffer, start, match.end(), sentences)
            start = match.end()
        if len(buffer) - start > MAX_SENTENCE_CHARS:  # no end in sight: cut, keep a short tail
            keep = buffer.rfind(" ", start, len(buffer) - 1)
            end = keep + 1 if keep > start else len(buffer)
            self._emit_span(buffer, start, end, sentences)
            start = end
        self._buffer = buffer[start:]
        self._scan_from = self._resume_point()
        return sentences

    def _emit_span(self, buffer: str, start: int, end: int, into: list[str]) -> None:
        """`buffer[start:end]` as sentences of at most MAX_SENTENCE_CHARS, cut at spaces."""
        while end - start > MAX_SENTENCE_CHARS:
            space = buffer.rfind(" ", start, start + MAX_SENTENCE_CHARS)
            cut = space + 1 if space > start else start + MAX_SENTENCE_CHARS
            self._emit(buffer[start:cut], into)
            start = cut
        self._emit(buffer[start:end], into)

    def _resume_point(self) -> int:
        """Where the next search starts: before a boundary that may still be being written."""
        end = len(self._buffer)
        limit = max(0, end - TAIL_LOOKBACK)
        at = end
        while at > limit and self._buffer[at - 1] in _TAIL:
            at -= 1
        return at

    def _emit(self, text: str, into: list[str]) -> None:
        text = text.strip()
        if not text:
            return
        if self._first:
            self._first = False
            parts = first_clause(text, self._phrase_words)
            self.first_parts = len(parts)
            into.extend(parts)
        else:
            into.append(text)

    def flush(self) -> list[str]:
        """What is left, as the last sentences (the answer is complete)."""
        rest, self._buffer, self._scan_from = self._buffer, "", 0
        out: list[str] = []
        self._emit_span(rest, 0, len(rest), out)  # a long unspaced tail is cut at the cap too
        return out


def first_clause(text: str, phrase_words: int = 0) -> list[str]:
    """`text` as [opening phrase, rest], cut at its first clause break that leaves at least
    `phrase_words` words on both sides, else [text]. With `phrase_words` 0 (the rule before):
    only a text over `LONG_TEXT_WORDS` words, at a clause of at least `MIN_CLAUSE_WORDS`.

    Only the first break is used: every cut ends a Piper inference with the phrase's own tone,
    so it is worth it once, where it buys time to the first audio. The phrase alone costs Piper
    about half of the sentence ("You said:" 77 ms of 130-170 ms on two cores, quiet).
    """
    words = len(text.split())
    if phrase_words <= 0 and words <= LONG_TEXT_WORDS:
        return [text]
    least_head = phrase_words if phrase_words > 0 else MIN_CLAUSE_WORDS
    least_rest = phrase_words if phrase_words > 0 else 1
    for match in _CLAUSE_END.finditer(text):
        if match.start() > MAX_SENTENCE_CHARS:
            break
        # the break's mark stays with the phrase (a dash too: no character is lost)
        head, rest = text[: match.end()].strip(), text[match.end() :].strip()
        if len(head.split()) >= least_head and len(rest.split()) >= least_rest:
            return [head, rest]
    return [text]


def sentences_of(text: str, phrase_words: int = 0) -> list[str]:
    """A whole text cut into sentences, its first clause apart when `first_clause` says so."""
    splitter = SentenceSplitter(phrase_words=phrase_words)
    return [*splitter.feed(text), *splitter.flush()]
