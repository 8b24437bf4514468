"""The language model mixed with the agent's phrases (STT_PHRASES, server/pipeline/phrase_lm.py):
built from packaged data without the network, read by the decoders, validated as a setting."""

from __future__ import annotations

import subprocess
import sys

import pytest

import tests.support.sentences as sentence_sets
from server.config import ROOT, Settings, SettingsError
from server.pipeline import phrase_lm
from server.pipeline.stt import RecognizerPool, new_decoder
from tests.pipeline.test_stt import transcribe
from tests.support.aio import run
from tests.support.sentences import words
from tests.support.speech import silence, speak

# Heard wrong by the general model alone on clean 16 kHz Piper speech ("hi there what they use
# it"), right with the demo agent's phrases mixed in, though no phrase is this sentence ("hi
# there" and "what day is it" are two).
MISHEARD = "Hi there, what day is it?"


@pytest.fixture(scope="module")
def agent_model():
    """The demo agent's mixed model as the server gets it: from the cache `./dev setup` fills,
    else built now (a minute or more on a busy machine), in a child process without network."""
    return phrase_lm.ensure(phrase_lm.AGENT_PHRASES)


def decoded(options: dict, text: str) -> str:
    """One utterance through a decoder made as the workers make theirs."""
    decoder = new_decoder(options)
    decoder.start_utt()
    decoder.process_raw(silence(0.3) + speak(text) + silence(0.3), False, True)
    decoder.end_utt()
    found = decoder.hyp()
    return found.hypstr if found else ""


@pytest.mark.timeout(1200)  # the first use may build the model
def test_a_sentence_the_general_model_mishears_is_right_with_the_phrases(agent_model):
    assert words(decoded({}, MISHEARD)) != words(MISHEARD)
    assert words(decoded({"lm": str(agent_model)}, MISHEARD)) == words(MISHEARD)


@pytest.mark.timeout(1200)
def test_the_pool_decodes_with_the_phrase_model_from_its_cache(agent_model, tmp_path):
    phrases = phrase_lm.read_phrases(phrase_lm.AGENT_PHRASES)
    name = phrase_lm.cache_name(phrases, phrase_lm.PHRASE_WEIGHT)
    (tmp_path / name).write_bytes(agent_model.read_bytes())  # as a build would leave it
    pool = RecognizerPool(workers=1, phrases=str(phrase_lm.AGENT_PHRASES), lm_cache=tmp_path)
    try:
        pool.warm()
        assert pool.decoder_options["lm"] == str(tmp_path / name)
        final, _, _ = run(transcribe(pool, silence(0.2) + speak(MISHEARD) + silence(0.3)))
    finally:
        pool.close()
    assert words(final) == words(MISHEARD)


def test_a_cached_model_is_found_without_reading_the_dictionary(tmp_path, monkeypatch):
    """Every server start asks for the model: finding it must not read the 3.5 MB
    pronunciation dictionary (the phrases with unknown words are left out only at a build)."""
    name = phrase_lm.cache_name(phrase_lm.read_phrases(phrase_lm.AGENT_PHRASES), 0.1)
    (tmp_path / name).write_bytes(b"a model")

    def no_dictionary():
        raise AssertionError("the dictionary was read")

    monkeypatch.setattr(phrase_lm, "known_words", no_dictionary)
    assert phrase_lm.ensure(phrase_lm.AGENT_PHRASES, tmp_path, 0.1) == tmp_path / name


def test_models_nobody_used_for_a_month_are_pruned_and_a_used_one_is_kept(tmp_path):
    import os
    import time

    phrases = phrase_lm.read_phrases(phrase_lm.AGENT_PHRASES)
    used, unused = (tmp_path / phrase_lm.cache_name(phrases, w) for w in (0.1, 0.3))
    other = tmp_path / "notes.txt"  # not a model: never touched
    month_ago = time.time() - (phrase_lm.UNUSED_DAYS + 1) * 86400
    for each in (used, unused, other):
        each.write_bytes(b"x")
        os.utime(each, (month_ago, month_ago))
    assert phrase_lm.ensure(phrase_lm.AGENT_PHRASES, tmp_path, 0.1) == used  # marks it used
    assert phrase_lm.prune(tmp_path) == [unused]
    assert used.exists() and other.exists() and not unused.exists()


@pytest.mark.timeout(1200)
def test_the_mix_keeps_the_general_models_probabilities_where_the_phrases_say_nothing(
    agent_model,
):
    """After words no phrase uses as a context, every probability is the general model's: so
    its n-grams were read out of the trie with the right words and values, and the backoff
    weights computed again come out as they were (pocketsphinx scores both files)."""
    from pocketsphinx import Config, LogMath, NGramModel

    general = NGramModel(Config(), LogMath(1.0001), str(phrase_lm.general_lm_path()))
    mixed = NGramModel(Config(), LogMath(1.0001), str(agent_model))

    def change(ngram: list[str]) -> float:  # log10; pocketsphinx wants the word, then history
        ordered = list(reversed(ngram))
        return (mixed.prob(ordered) - general.prob(ordered)) * phrase_lm.LOG10_BASE

    for ngram in (["<s>", "turn", "off"], ["a", "large", "pizza"], ["credit", "card"]):
        assert change(ngram) == pytest.approx(0.0, abs=0.002), ngram
    assert change(["turn", "off", "the"]) == pytest.approx(0.0, abs=0.002)  # read by backoff
    # in a phrase's context its own next word weighs more, and the others a little less
    assert change(["<s>", "hello"]) > 0.5
    assert change(["what", "day"]) > 0.3
    assert -0.05 < change(["what", "pizza"]) < -0.01


def test_the_build_cannot_reach_the_network():
    """The builder (`python -m server.pipeline.phrase_lm`, which `ensure` runs) closes the
    network to itself before it reads anything: nothing is downloaded, and cannot be."""
    probe = (
        "from server.pipeline import phrase_lm; phrase_lm.offline(); import urllib.request; "
        "urllib.request.urlopen('http://127.0.0.1:9', timeout=5)"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode != 0
    assert "may not use the network" in done.stderr
    source = (ROOT / "server" / "pipeline" / "phrase_lm.py").read_text()
    assert "def main() -> None:\n    offline()" in source  # the first thing the builder does


def test_the_demo_agents_phrases_never_hold_a_test_sentence():
    """The phrases are written from what the agent answers about, not from the sentences the
    recogniser is measured on (bench/wer.py) or tested with."""
    phrases = {" ".join(p) for p in phrase_lm.read_phrases(phrase_lm.AGENT_PHRASES)}
    every_sentence = [
        sentence
        for name in dir(sentence_sets)
        if name.isupper()
        for sentence in getattr(sentence_sets, name)
    ]
    assert len(every_sentence) > 100
    assert not [s for s in every_sentence if " ".join(words(s)) in phrases]


def test_a_missing_or_empty_phrase_list_is_refused_clearly(tmp_path):
    with pytest.raises(SettingsError, match=r"STT_PHRASES.*does not exist"):
        Settings.from_env({"STT_PHRASES": str(tmp_path / "absent.txt")})
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n\n   \n")
    with pytest.raises(SettingsError, match=r"STT_PHRASES.*has no phrases"):
        Settings.from_env({"STT_PHRASES": str(empty)})
    unknown = tmp_path / "unknown.txt"
    unknown.write_text("zxqv blorptangle\n")
    with pytest.raises(phrase_lm.PhraseListError, match="recogniser knows"):
        phrase_lm.usable_phrases(phrase_lm.read_phrases(unknown))


def test_the_phrase_list_setting(tmp_path):
    assert Settings.from_env({}).stt_phrases == str(phrase_lm.AGENT_PHRASES)
    with_webhook = {"AGENT_WEBHOOK_URL": "https://agent.example/hook", "AGENT_WEBHOOK_SECRET": "s"}
    assert Settings.from_env(with_webhook).stt_phrases == ""  # not the demo agent's phrases
    assert Settings.from_env({"STT_PHRASES": "none"}).stt_phrases == ""
    own = tmp_path / "own.txt"
    own.write_text("book a table\n")
    assert Settings.from_env({"STT_PHRASES": str(own)}).stt_phrases == str(own)
    # settings made in code (the tests' servers, the benches) default as the environment does
    assert Settings().stt_phrases == str(phrase_lm.AGENT_PHRASES)
    assert Settings(agent_webhook_url="https://agent.example/hook").stt_phrases == ""
    assert Settings(stt_phrases="none").stt_phrases == ""


def test_a_phrase_with_a_word_the_recogniser_cannot_say_is_left_out():
    kept = phrase_lm.usable_phrases([["hello", "there"], ["hello", "blorptangle"]])
    assert kept == [["hello", "there"]]


class TinyGeneral:
    """A general model of a few words, as `GeneralModel` gives one: normalised with backoff."""

    def __init__(self):
        import numpy as np

        self.words = ["</s>", "<s>", "a", "b", "c", "d"]
        uni = np.array([0.2, 0.0, 0.3, 0.2, 0.2, 0.1])
        bigrams = {(1, 2): 0.5, (1, 3): 0.2, (2, 3): 0.6, (2, 0): 0.1, (3, 4): 0.5}
        trigrams = {(1, 2, 3): 0.7, (2, 3, 4): 0.8}
        bo1 = np.ones(6)
        for context in {k[0] for k in bigrams}:
            succ = [k for k in bigrams if k[0] == context]
            bo1[context] = (1 - sum(bigrams[k] for k in succ)) / (1 - sum(uni[k[1]] for k in succ))

        def p2(a, b):
            return bigrams.get((a, b), bo1[a] * uni[b])

        bo2 = {}
        for context in {k[:2] for k in trigrams}:
            succ = [k for k in trigrams if k[:2] == context]
            top = 1 - sum(trigrams[k] for k in succ)
            bo2[context] = top / (1 - sum(p2(context[1], k[2]) for k in succ))
        self.ids = [
            np.arange(6)[:, None],
            np.array(list(bigrams)),
            np.array(list(trigrams)),
        ]
        with np.errstate(divide="ignore"):
            self.logp = [
                np.where(uni > 0, np.log10(np.maximum(uni, 1e-99)), -99.0),
                np.log10(list(bigrams.values())),
                np.log10(list(trigrams.values())),
            ]
        self.logbo = [np.log10(bo1), np.log10([bo2.get(k, 1.0) for k in bigrams]), None]


def probability(tables, size, gram) -> float:
    """P(last | before) in a mixed model, with ARPA backoff."""
    import numpy as np

    from server.pipeline.phrase_lm import _keys

    ids = np.array([gram])
    at, there = tables[len(gram) - 1].find(_keys(ids, size))
    if there[0]:
        return float(tables[len(gram) - 1].prob[at[0]])
    at, there = tables[len(gram) - 2].find(_keys(ids[:, :-1], size))
    backoff = float(tables[len(gram) - 2].backoff[at[0]]) if there[0] else 1.0
    return backoff * probability(tables, size, gram[1:])


def test_the_mix_is_a_distribution_in_every_context_and_general_outside_the_phrases():
    general = TinyGeneral()
    _, unmixed = phrase_lm.mix(general, phrase_lm.PhraseModel([["b"]]), 0.0)
    cases = [([["a", "c"], ["a", "c", "d"]], 0.0), ([["a", "c"], ["e"]], 0.0)]  # "e": new
    cases.append(([["c", "d"], ["a", "e"]], 0.1))  # and a phrase may begin anywhere
    for phrases, anywhere in cases:
        words, tables = phrase_lm.mix(general, phrase_lm.PhraseModel(phrases), 0.2, anywhere)
        size = len(words)
        predicted = [i for i, w in enumerate(words) if w != "<s>"]
        for history in [(1,), (2,), (3,), (4,), (1, 2), (2, 3), (3, 4), (2, 4), (5, 2)]:
            total = sum(probability(tables, size, (*history, w)) for w in predicted)
            assert total == pytest.approx(1.0, abs=1e-6), (phrases, history)
    assert "e" in words
    words, tables = phrase_lm.mix(general, phrase_lm.PhraseModel([["a", "c", "d"]]), 0.2)
    # after "b" the phrases know nothing: the general model's words, as they were
    for w in (0, 2, 3, 4, 5):
        assert probability(tables, 6, (3, w)) == pytest.approx(probability(unmixed, 6, (3, w)))
    # after "a" they do: "c" weighs more
    assert probability(tables, 6, (2, 4)) > 1.5 * probability(unmixed, 6, (2, 4))
