"""Properties of the sentence splitter over generated text and piece boundaries (Hypothesis).

Whatever the agent streams and however it is cut into pieces: nothing is lost or reordered
(the sentences, joined, hold the input's characters but whitespace), no sentence is empty,
padded or longer than `MAX_SENTENCE_CHARS`, and each `feed` scans only its own piece plus a
bounded look-back (linear in the input, never rescanning the pending text).
"""

from __future__ import annotations

import itertools
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from server.pipeline import sentences
from server.pipeline.sentences import MAX_SENTENCE_CHARS, TAIL_LOOKBACK, SentenceSplitter
from tests.pipeline.test_sentences import CountingPattern

BOUNDED = settings(max_examples=200, deadline=None)

# Pieces an agent's text is made of, the splitter's hard cases among them.
TOKENS = ["Mr. ", "Dr.", "e.g. ", "3.5", "Hello", " ", "  ", "\n", ". ", "!", "?! ", '." ',
          ") ", ", ", "; ", " - ", "word", "x" * 700, "y " * 400, "Well,"]  # fmt: skip
texts = st.lists(st.sampled_from(TOKENS) | st.text(max_size=12), max_size=60).map("".join)


@st.composite
def streamed(draw) -> tuple[str, list[str]]:
    """A text and the pieces it arrives in."""
    text = draw(texts)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=20)))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in itertools.pairwise(bounds)]


def without_whitespace(text: str) -> str:
    return re.sub(r"\s+", "", text)


@BOUNDED
@given(streamed(), st.booleans())
def test_sentences_keep_every_character_in_order_and_are_bounded(case, first_clause_apart):
    text, pieces = case
    splitter = SentenceSplitter(first_clause_apart=first_clause_apart)
    out = [sentence for piece in pieces for sentence in splitter.feed(piece)]
    out += splitter.flush()
    assert without_whitespace("".join(out)) == without_whitespace(text)
    for sentence in out:
        assert sentence and sentence == sentence.strip()
        assert len(sentence) <= MAX_SENTENCE_CHARS


@BOUNDED
@given(streamed())
def test_each_feed_scans_its_piece_and_a_bounded_look_back(case):
    _, pieces = case
    counter = CountingPattern(sentences._BOUNDARY)
    original, sentences._BOUNDARY = sentences._BOUNDARY, counter
    try:
        splitter = SentenceSplitter()
        for piece in pieces:
            before = counter.scanned
            splitter.feed(piece)
            assert counter.scanned - before <= len(piece) + TAIL_LOOKBACK
    finally:
        sentences._BOUNDARY = original
