"""Sentence splitting: where streamed text is cut, and that the work stays linear in the input."""

from __future__ import annotations

import pytest

from server.pipeline import sentences
from server.pipeline.sentences import (
    MAX_SENTENCE_CHARS,
    SentenceSplitter,
    first_clause,
    sentences_of,
)


def test_sentence_splitter_cuts_streamed_text_at_sentence_ends():
    splitter = SentenceSplitter(first_clause_apart=False)
    assert splitter.feed("Hello Mr. Smith. It is 3.5 degr") == ["Hello Mr. Smith."]
    assert splitter.feed("ees at 10.30 today! Is it") == ["It is 3.5 degrees at 10.30 today!"]
    assert splitter.feed(" cold? e.g. very") == ["Is it cold?"]
    assert splitter.feed(" cold.") == []  # no space after the stop yet: it may continue
    assert splitter.flush() == ["e.g. very cold."]
    assert splitter.flush() == []


def test_a_boundary_split_across_pieces_is_found():
    splitter = SentenceSplitter()
    pieces = ["Hel", "lo", ".", '"', " Th", "ere!", "!", " Dr", ". Who", "? ok"]
    out = [sentence for piece in pieces for sentence in splitter.feed(piece)]
    assert out == ['Hello."', "There!!", "Dr. Who?"]
    assert splitter.flush() == ["ok"]


def test_only_the_first_long_sentence_has_its_first_clause_cut():
    long = "Well, I heard you ask about the weather, and here is what I can tell you today."
    assert first_clause(long) == [
        "Well, I heard you ask about the weather,",
        "and here is what I can tell you today.",
    ]
    assert first_clause("Short, and sweet.") == ["Short, and sweet."]
    no_break = "This sentence has more than twelve words but not a single clause break in it."
    assert first_clause(no_break) == [no_break]
    assert sentences_of(f"{long} Second one. {long} Third") == [
        "Well, I heard you ask about the weather,",
        "and here is what I can tell you today.",
        "Second one.",
        long,  # later sentences stay whole
        "Third",
    ]
    assert sentences_of("") == []


class CountingPattern:
    """Stands in for the boundary regex and counts the characters handed to it."""

    def __init__(self, pattern):
        self.pattern = pattern
        self.scanned = 0

    def finditer(self, string, pos=0):
        self.scanned += len(string) - pos
        return self.pattern.finditer(string, pos)


@pytest.mark.parametrize("piece", [1000, 7])
def test_splitting_is_linear_even_when_no_sentence_ever_ends(monkeypatch, piece):
    """800 KB of "Mr. " (an abbreviation, never a sentence end), streamed in small pieces: each
    character is scanned a bounded number of times (rescanning all pending text per piece, as
    the splitter once did, is quadratic), and no "sentence" grows past the cap."""
    counter = CountingPattern(sentences._BOUNDARY)
    monkeypatch.setattr(sentences, "_BOUNDARY", counter)
    text = "Mr. " * (800_000 // 4)
    splitter = SentenceSplitter()
    out = []
    for offset in range(0, len(text), piece):
        out += splitter.feed(text[offset : offset + piece])
    out += splitter.flush()
    assert counter.scanned <= 3 * len(text), counter.scanned
    assert all(len(s) <= MAX_SENTENCE_CHARS for s in out)
    assert sum(len(s.split()) for s in out) == 200_000  # nothing lost


def test_one_huge_piece_is_cut_into_bounded_sentences():
    out = sentences_of("Mr. " * 200_000 + "End.")
    assert all(len(s) <= MAX_SENTENCE_CHARS for s in out)
    assert out[-1].endswith("End.")
    assert sum(len(s.split()) for s in out) == 200_001


def test_the_first_sentence_s_opening_phrase_is_cut_at_its_first_clause_break():
    """`phrase_words` (TTS_FIRST_PHRASE_WORDS): the first break that leaves that many words on
    both sides, whatever the sentence's length; later sentences stay whole."""
    assert first_clause("You said: What time is it?", 2) == ["You said:", "What time is it?"]
    assert first_clause("Well, I think so, yes.", 2) == ["Well, I think so, yes."]  # 1 | 1
    assert first_clause("Of course - I can do that.", 2) == ["Of course -", "I can do that."]
    assert first_clause("No, thanks.", 2) == ["No, thanks."]  # one word each side
    assert first_clause("You said: Thanks.", 2) == ["You said: Thanks."]  # one word after
    assert first_clause("Nice to meet you; really.", 3) == ["Nice to meet you; really."]
    assert sentences_of("You said: Hello, how are you? Hello, I'm doing well, thanks.", 2) == [
        "You said:",
        "Hello, how are you?",
        "Hello, I'm doing well, thanks.",
    ]
    assert sentences_of("You said: What time is it? It's 3:41 PM.", 0) == [
        "You said: What time is it?",  # 0: the rule before, long sentences only
        "It's 3:41 PM.",
    ]


def test_a_dash_where_the_first_clause_is_cut_is_kept():
    """Hypothesis found it: the cut dropped a dash break's dash (the rule before did too)."""
    long = "I looked at every option you mentioned today - and the second one is best."
    assert first_clause(long) == [
        "I looked at every option you mentioned today -",
        "and the second one is best.",
    ]
