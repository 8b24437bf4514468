"""Sentence splitting, the pipeline's one place for it: streamed text in, sentences out.

The agent's words arrive in pieces (one `response.tts` per sentence, or a token at a time);
synthesis starts as soon as a sentence is whole, so the first audio does not wait for the whole
answer. The first sentence of an answer has its first clause cut off when it is long
(`first_clause`), so the very first audio waits only for that clause; later sentences are left
whole (every cut ends a Piper inference with a falling tone).

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

    def __init__(self, first_clause_apart: bool = True) -> None:
        self._buffer = ""
        self._scan_from = 0  # boundaries before this offset of the buffer were already judged
        self._first = first_clause_apart

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
            into.extend(first_clause(text))
        else:
            into.append(text)

    def flush(self) -> list[str]:
        """What is left, as the last sentences (the answer is complete)."""
        rest, self._buffer, self._scan_from = self._buffer, "", 0
        out: list[str] = []
        self._emit_span(rest, 0, len(rest), out)  # a long unspaced tail is cut at the cap too
        return out


def first_clause(text: str) -> list[str]:
    """`text` as [first clause, rest] when it is long and has an early clause break, else [text].

    Only the first break is used: every cut ends a Piper inference with a falling tone, so it is
    worth it once, where it buys time to the first audio.
    """
    if len(text.split()) <= LONG_TEXT_WORDS:
        return [text]
    for match in _CLAUSE_END.finditer(text):
        head, rest = text[: match.start() + 1].strip(), text[match.end() :].strip()
        if len(head.split()) >= MIN_CLAUSE_WORDS and rest:
            return [head, rest]
        if match.start() > MAX_SENTENCE_CHARS:
            break
    return [text]


def sentences_of(text: str) -> list[str]:
    """A whole text cut into sentences, its first clause apart when `first_clause` says so."""
    splitter = SentenceSplitter()
    return [*splitter.feed(text), *splitter.flush()]
