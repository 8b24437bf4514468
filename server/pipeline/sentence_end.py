"""Can these words end a sentence? The recogniser's own language model says how likely it is.

The turn-end model (endpointing.py) hears the voice, not the words: "Please remind me to call,"
said with a falling voice sounds finished to it (0.98), and so does a finished question. The
words tell them apart: pocketsphinx's en-US trigram model (`en-us.lm.bin`, shipped inside the
`pocketsphinx` package we decode with) gives an end of sentence after "to call" a probability of
0.04 and after "is it" 0.11. `end_probability` is that probability, P(</s> | the last two words).

Measured on the recogniser's own words 96-160 ms into the silence (bench/endpointing.py,
synthetic Piper speech): the 52 finished questions scored 0.06-0.51 (one, misheard as "close to
my", 0.006); the 24 sentences at their inner hesitation ("a table for", "the song that", "to
call", misheard "ride want") 0.004-0.072, one misheard "john man" 0.22 (the model doubts that
one). Better than the list of words a sentence seldom ends on that it replaced (speculation.py
keeps it for its own cheaper check), which let "to call" and "ride want" through. The threshold
(`TurnSettings.sentence_end_min`, 0.075) was chosen on these same sentences, just above the
highest hesitation the model is also sure of ("taxi et", 0.068); two questions fall below it
("how much does the cost" 0.070, "that is not what i said" 0.061) and wait for the second look
or the fallback. No held-out set was measured then: the margin is thin.

Held out since (tests/support/sentences.py, measured after these thresholds were chosen): at a
short silence after a number the two-word view misleads, a unit's first syllable heard as a
word ("call me back in ten men" 0.135, "in twenty men" 0.111): `near_a_number` tells the
detector to want a clear end there (turns.py). Finished questions whose first look the model
doubted (0.6-0.95) scored 0.21-0.43 when their words were right ("thank you very much" 0.23,
"have a nice day" 0.43); the hesitations the model was that sure of at most 0.146.

Loading the model takes ~0.2 s and ~30 MB, once per process; a lookup takes microseconds.
"""

from __future__ import annotations

import functools
import math
import os
import threading

from .speculation import words_of

_LOG_BASE = math.log10(1.0001)  # pocketsphinx's log probabilities are in base 1.0001
_lock = threading.Lock()


@functools.cache
def _model():
    import pocketsphinx

    pocketsphinx.set_loglevel("FATAL")  # it logs every table it loads
    path = os.path.join(pocketsphinx.get_model_path("en-us"), "en-us.lm.bin")
    return pocketsphinx.NGramModel.readfile(path)


def warm() -> None:
    with _lock:
        _model()


# fmt: off
NUMBER_WORDS = frozenset([
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    "hundred", "thousand", "million", "half", "quarter",
])
# fmt: on


def near_a_number(text: str) -> bool:
    """Is one of the last two words a number? A unit often follows ("twenty five | minutes"),
    and the recogniser hears its first syllable as a short word of its own ("twenty five
    men", P(end) 0.135): after a number the language model's two-word view is no evidence."""
    return any(word in NUMBER_WORDS or word.isdigit() for word in words_of(text)[-2:])


def end_probability(text: str) -> float:
    """P(end of sentence | the last two words of `text`); 1.0 without words (nothing to judge
    by: the voice decides)."""
    words = words_of(text)[-2:]
    if not words:
        return 1.0
    warm()
    # NGramModel.prob takes the predicted word first, then its history from the nearest back.
    return 10 ** (_model().prob(["</s>", *reversed(words)]) * _LOG_BASE)
