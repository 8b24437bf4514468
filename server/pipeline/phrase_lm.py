"""A language model adapted to the conversation: the general en-US model mixed with a small
one made from the phrases an application expects (`STT_PHRASES`), built once and cached on disk.

Why: pocketsphinx's general model ranks words by how often they appear in general text, so a
short greeting on clean audio ("hello, how are you") was heard as "oh how're you": a word the
agent expects all the time lost to a likelier one, and the turn-end rules, seeing words that
look unfinished, waited up to a second longer. Mixed with a model of the phrases the agent
expects, the words it expects weigh more wherever they fit, and every other word and sequence
of the general model stays (at `1 - PHRASE_WEIGHT` of its probability).

How: linear interpolation, made once into one model (as SRILM's `ngram -mix-lm` does), but
only where the phrases know the context. After a history whose last word(s) the phrases use as
a context (`<s>`, "what", "how are"), the next word's probability is
`(1 - w) p_general + w p_phrases`, where `p_phrases` is the phrases' discounted counts in that
context (absolute discounting, `DISCOUNT`) and, for the mass left over, the general model's own
probability in the full history; after any other history the general model is unchanged.
Each is a proper distribution, so no word the phrases never use is pushed down outside their
contexts (an earlier build mixed the phrases' unigrams in everywhere, and general speech lost:
docs/scaling.md). The backoff weights are then computed again so every context's probabilities
sum to one. The result is a plain trigram model of the general model's size, read by the
decoder in place of the general one (`DECODER_CONFIG`'s `lm`), so a worker's memory and the
decoding cost stay those of the general model: nothing is interpolated while decoding.

The general model ships only as pocketsphinx's binary trie (`en-us.lm.bin`), and pocketsphinx
5.1.1 crashes writing it as ARPA text (its header counts six bigrams more than its trie holds:
cmusphinx/pocketsphinx#502). So its n-grams are read straight out of the loaded trie, through
pocketsphinx's own exported functions (`GeneralModel`, ctypes, in a child process: the walk
leaves ~100 MB of small allocations behind). The build takes ~1 min of one core and runs once
per phrase list (`./dev setup` makes the demo agent's): the result is kept in `.cache/stt/`,
named by a hash of the phrases, the weight and the general model's file, so nothing is
downloaded and every later start (any `DATA_DIR`, any test) reuses it.

Words the recogniser has no pronunciation for (not in its dictionary) cannot be recognised:
a phrase with one is left out, and named in the log.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import hashlib
import logging
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..files import whole

log = logging.getLogger("server.pipeline")

# The phrase model's share of the mix, in the contexts it knows. Measured on bench/wer.py's 52
# questions (Piper, docs/scaling.md "A language model from the agent's phrases"): 0.1 and 0.3
# gave the agent's 14 questions 13.2 and 11.8 % word errors against 16.2 (16 kHz, clean);
# 0.1, the smaller push, is the default until an unrelated list is measured at 0.3 too.
PHRASE_WEIGHT = 0.1
# A phrase may also start after words the phrases do not know ("no, thank you"): after such a
# history the phrases' own beginnings (their <s> context) are mixed in with this share (0: only
# where the phrases know the context). Measured beside PHRASE_WEIGHT: docs/scaling.md.
ANYWHERE_WEIGHT = 0.0
DISCOUNT = 0.5  # absolute discount of the phrase model's counts (its backoff mass)
VERSION = 2  # of the build: a change to how the model is made makes a new cache file
LOG10_BASE = math.log10(1.0001)  # pocketsphinx's log base: the trie's floats are log_1.0001
ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = ROOT / ".cache" / "stt"
CACHE_PREFIX = "phrases-"
UNUSED_DAYS = 30  # a cached model nobody used for this long is removed at the next build
AGENT_PHRASES = ROOT / "server" / "agent" / "phrases.txt"  # the demo agent's own list


class PhraseListError(ValueError):
    """The phrase list cannot be used (missing, unreadable, or without a usable phrase)."""


def general_lm_path() -> Path:
    from pocketsphinx import get_model_path

    return Path(get_model_path()) / "en-us" / "en-us.lm.bin"


def dictionary_path() -> Path:
    from pocketsphinx import get_model_path

    return Path(get_model_path()) / "en-us" / "cmudict-en-us.dict"


def normalise(text: str) -> list[str]:
    """Words as the recogniser writes them: lower case, no punctuation but apostrophes."""
    return re.sub(r"[^a-z' ]", " ", text.lower().replace("’", "'")).split()


def read_phrases(path: str | os.PathLike) -> list[list[str]]:
    """The phrases of a list file: one a line; blank lines and `#` comments skipped."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PhraseListError(f"phrase list {source} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PhraseListError(f"phrase list {source} cannot be read: {error}") from None
    phrases = [normalise(line.split("#", 1)[0]) for line in text.splitlines()]
    phrases = [words for words in phrases if words]
    if not phrases:
        raise PhraseListError(f"phrase list {source} has no phrases (one a line)")
    return phrases


def known_words() -> set[str]:
    """Every word of the recogniser's pronunciation dictionary."""
    words = set()
    with open(dictionary_path(), encoding="utf-8") as lines:
        for line in lines:
            word = line.split(" ", 1)[0]
            words.add(word.split("(", 1)[0])  # "read(2)": a second pronunciation
    return words


def usable_phrases(phrases: list[list[str]]) -> list[list[str]]:
    """The phrases whose every word the recogniser can pronounce; the rest are logged."""
    known = known_words()
    kept, unknown = [], set()
    for words in phrases:
        missing = [w for w in words if w not in known]
        if missing:
            unknown.update(missing)
        else:
            kept.append(words)
    if unknown:
        log.warning(
            "phrase list: %d phrases left out, words the recogniser cannot pronounce: %s",
            len(phrases) - len(kept),
            ", ".join(sorted(unknown)[:20]),
        )
    if not kept:
        raise PhraseListError("no phrase in the list has only words the recogniser knows")
    return kept


# -- the phrase model ---------------------------------------------------------------------------


class PhraseModel:
    """The phrases' n-gram counts (orders 1-3, each phrase between <s> and </s>): what `mix`
    makes their model of, in the contexts they know."""

    def __init__(self, phrases: list[list[str]]):
        counts: list[dict[tuple, int]] = [defaultdict(int) for _ in range(3)]
        for words in phrases:
            tokens = ["<s>", *words, "</s>"]
            for end in range(1, len(tokens)):
                for order in range(1, min(3, end + 1) + 1):
                    counts[order - 1][tuple(tokens[end - order + 1 : end + 1])] += 1
        self.ngrams = [dict(c) for c in counts]
        self.words = {w for gram in counts[0] for w in gram} | {"<s>"}


# -- the general model, read out of pocketsphinx's trie -----------------------------------------


class _Base(ctypes.Structure):  # ngram_model_t (src/lm/ngram_model_internal.h, 5.1.1)
    _fields_ = [
        ("refcount", ctypes.c_int),
        ("n_counts", ctypes.POINTER(ctypes.c_uint32)),
        ("n_1g_alloc", ctypes.c_int32),
        ("n_words", ctypes.c_int32),
        ("n", ctypes.c_uint8),
        ("n_classes", ctypes.c_uint8),
        ("writable", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("lmath", ctypes.c_void_p),
        ("lw", ctypes.c_float),
        ("log_wip", ctypes.c_int32),
        ("log_zero", ctypes.c_int32),
        ("word_str", ctypes.POINTER(ctypes.c_char_p)),
        ("wid", ctypes.c_void_p),
        ("tmp_wids", ctypes.c_void_p),
        ("classes", ctypes.c_void_p),
        ("funcs", ctypes.c_void_p),
    ]


class _TrieModel(ctypes.Structure):  # ngram_model_trie_t
    _fields_ = [("base", _Base), ("trie", ctypes.c_void_p)]


class _Trie(ctypes.Structure):  # the head of lm_trie_t
    _fields_ = [
        ("ngram_mem", ctypes.c_void_p),
        ("ngram_mem_size", ctypes.c_size_t),
        ("unigrams", ctypes.POINTER(ctypes.c_float)),  # unigram_t: prob, bo, next (4 bytes)
    ]


class _Raw(ctypes.Structure):  # ngram_raw_t
    _fields_ = [
        ("words", ctypes.POINTER(ctypes.c_uint32)),
        ("prob", ctypes.c_float),
        ("backoff", ctypes.c_float),
        ("order", ctypes.c_uint32),
    ]


class _Range(ctypes.Structure):  # node_range_t
    _fields_ = [("begin", ctypes.c_uint32), ("end", ctypes.c_uint32)]


class GeneralModel:
    """The n-grams of a pocketsphinx trie model as arrays: `words`, and per order `ids`
    (n-grams x order word ids), `logp` and `logbo` (log10; the longest order has no backoff).

    Reads through pocketsphinx's exported C functions (`ngram_model_read`,
    `lm_trie_fill_raw_ngram`) with its 5.1.1 structures; the counts found are checked against
    the file's header, and `tests/pipeline/test_phrase_lm.py` checks the probabilities against
    pocketsphinx's own scoring, so a different layout fails loudly rather than silently.
    """

    def __init__(self, path: Path):
        import pocketsphinx

        lib = ctypes.CDLL(pocketsphinx._pocketsphinx.__file__)
        lib.ps_config_init.restype = ctypes.c_void_p
        lib.ps_config_init.argtypes = [ctypes.c_void_p]
        lib.logmath_init.restype = ctypes.c_void_p
        lib.logmath_init.argtypes = [ctypes.c_double, ctypes.c_int, ctypes.c_int]
        lib.ngram_model_read.restype = ctypes.c_void_p
        lib.ngram_model_read.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_void_p,
        ]
        lib.lm_trie_fill_raw_ngram.restype = None
        lib.lm_trie_fill_raw_ngram.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_uint32),
            ctypes.POINTER(ctypes.c_uint32),
            _Range,
            ctypes.POINTER(ctypes.c_uint32),
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
        ]
        config = lib.ps_config_init(None)
        lmath = lib.logmath_init(1.0001, 0, 0)
        pointer = lib.ngram_model_read(config, str(path).encode(), 2, lmath)  # NGRAM_BIN
        if not pointer:
            raise RuntimeError(f"pocketsphinx could not read {path}")
        model = _TrieModel.from_address(pointer)
        order = model.base.n
        counts = [model.base.n_counts[i] for i in range(order)]
        if order != 3 or model.base.n_words != counts[0]:
            raise RuntimeError(f"{path}: not a trigram trie model as expected ({order=})")
        self.words = [model.base.word_str[i].decode("utf-8") for i in range(counts[0])]
        trie = _Trie.from_address(model.trie)
        unigrams = np.ctypeslib.as_array(trie.unigrams, shape=(counts[0], 3)).copy()
        self.ids = [np.arange(counts[0], dtype=np.int64)[:, None]]
        self.logp = [unigrams[:, 0].astype(np.float64) * LOG10_BASE]
        self.logbo = [unigrams[:, 1].astype(np.float64) * LOG10_BASE]
        layout = np.dtype(  # _Raw, as numpy reads it
            {
                "names": ["words", "prob", "bo"],
                "formats": ["u8", "f4", "f4"],
                "offsets": [_Raw.words.offset, _Raw.prob.offset, _Raw.backoff.offset],
                "itemsize": ctypes.sizeof(_Raw),
            }
        )
        for n in (2, 3):
            raw = (_Raw * counts[n - 1])()
            found = ctypes.c_uint32(0)
            history = (ctypes.c_uint32 * 4)()
            lib.lm_trie_fill_raw_ngram(
                model.trie, raw, ctypes.byref(found), model.base.n_counts, _Range(0, 0),
                history, 0, n, order,
            )  # fmt: skip
            # the shipped model's header claims a few more bigrams than its trie holds (#502)
            if not counts[n - 1] - 16 <= found.value <= counts[n - 1]:
                raise RuntimeError(f"{path}: {found.value} {n}-grams read, {counts[n - 1]} told")
            table = np.frombuffer(raw, dtype=layout, count=found.value)
            ids = np.empty((found.value, n), dtype=np.int64)
            width = 4 * n
            for row, address in enumerate(table["words"].tolist()):
                ids[row] = np.frombuffer(ctypes.string_at(address, width), dtype=np.uint32)
            self.ids.append(ids)
            self.logp.append(table["prob"].astype(np.float64) * LOG10_BASE)
            self.logbo.append(table["bo"].astype(np.float64) * LOG10_BASE if n < 3 else None)


# -- the mix ------------------------------------------------------------------------------------


def _keys(ids: np.ndarray, size: int) -> np.ndarray:
    """One int64 per n-gram (base `size` digits), to look n-grams up with `searchsorted`."""
    key = np.zeros(len(ids), dtype=np.int64)
    for column in range(ids.shape[1]):
        key = key * size + ids[:, column]
    return key


class _Table:
    """One order's n-grams sorted by key, with their probabilities (linear) and backoffs."""

    def __init__(self, ids: np.ndarray, prob: np.ndarray, size: int):
        key = _keys(ids, size)
        order = np.argsort(key, kind="stable")
        self.ids, self.prob, self.key = ids[order], prob[order], key[order]
        self.backoff = np.ones(len(ids))

    def find(self, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions of `key` and whether each is there."""
        at = np.minimum(np.searchsorted(self.key, key), max(len(self.key) - 1, 0))
        return at, (self.key[at] == key) if len(self.key) else np.zeros(len(key), bool)


def mix(
    general: GeneralModel,
    phrases: PhraseModel,
    weight: float = PHRASE_WEIGHT,
    anywhere: float = ANYWHERE_WEIGHT,
):
    """The interpolated model: (words, [unigram, bigram, trigram] `_Table`s), log10 values in
    the tables' `prob` and `backoff` replaced by linear ones."""
    words = list(general.words)
    index = {w: i for i, w in enumerate(words)}
    for word in sorted(phrases.words - index.keys()):
        index[word] = len(words)
        words.append(word)
    size = len(words)
    extra = size - len(general.words)

    # The general model on the union's ids (a word it lacks: probability 0).
    g_prob = [10.0**p for p in general.logp]
    g_prob[0] = np.concatenate([g_prob[0], np.zeros(extra)])
    g_bo = [10.0 ** general.logbo[0], 10.0 ** general.logbo[1]]
    g_bo[0] = np.concatenate([g_bo[0], np.ones(extra)])
    g_tables = [_Table(general.ids[n], g_prob[n], size) for n in range(3)]
    g_tables[1].backoff = g_bo[1][np.argsort(_keys(general.ids[1], size), kind="stable")]

    def general_p(ids: np.ndarray) -> np.ndarray:
        """P_general(last | before), with backoff, for n-grams as id rows (vectorised)."""
        n = ids.shape[1]
        if n == 1:
            return g_prob[0][ids[:, 0]]
        at, there = g_tables[n - 1].find(_keys(ids, size))
        out = np.where(there, g_tables[n - 1].prob[at], 0.0)
        miss = ~there
        if miss.any():
            if n == 2:
                bo = g_bo[0][ids[miss, 0]]
            else:
                cat, cthere = g_tables[1].find(_keys(ids[miss, :2], size))
                bo = np.where(cthere, g_tables[1].backoff[cat], 1.0)
            out[miss] = bo * general_p(ids[miss, 1:])
        return out

    # The phrase model's counts on the union's ids, by context: (context..., word) → count.
    counts = [
        {tuple(index[w] for w in gram): c for gram, c in phrases.ngrams[n - 1].items()}
        for n in (1, 2, 3)
    ]
    seen = [defaultdict(int) for _ in range(2)]  # context → its count, and its distinct words
    distinct = [defaultdict(int) for _ in range(2)]
    for n in (2, 3):
        for gram, c in counts[n - 1].items():
            seen[n - 2][gram[:-1]] += c
            distinct[n - 2][gram[:-1]] += 1

    def phrase_share(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For n-grams as id rows whose history ends in a context the phrases know (the
        longest such): the general model's share `1 - w + w * backoff mass` and the phrases'
        own discounted probability `w * (count - d) / context count`; (1, 0) elsewhere."""
        keep, own = np.ones(len(ids)), np.zeros(len(ids))
        done = np.zeros(len(ids), dtype=bool)
        for length in range(ids.shape[1] - 1, 0, -1):  # the longest known context first
            if not seen[length - 1]:
                continue
            known = np.array(sorted(_keys(np.array(list(seen[length - 1])), size)))
            context = _keys(ids[:, -1 - length : -1], size)
            where = np.minimum(np.searchsorted(known, context), len(known) - 1)
            rows = np.nonzero(~done & (known[where] == context))[0]
            for row in rows.tolist():
                history = tuple(ids[row, -1 - length : -1].tolist())
                total = seen[length - 1][history]
                mass = DISCOUNT * distinct[length - 1][history] / total
                count = counts[length].get((*history, int(ids[row, -1])), 0)
                keep[row] = 1 - weight + weight * mass
                own[row] = weight * max(count - DISCOUNT, 0) / total
            done[rows] = True
        if anywhere > 0:  # elsewhere, a phrase may begin
            rest = ~done
            keep[rest] = 1 - anywhere + anywhere * start_mass
            own[rest] = anywhere * start_own[ids[rest, -1]]
        return keep, own

    start = (index["<s>"],)  # the phrases' beginnings: their counts after <s>
    start_mass = DISCOUNT * distinct[0][start] / seen[0][start]
    start_own = np.zeros(size)
    for gram, c in counts[1].items():
        if gram[0] == start[0]:
            start_own[gram[1]] = max(c - DISCOUNT, 0) / seen[0][start]

    tables = []
    for n in (1, 2, 3):
        ids = general.ids[n - 1]
        if n == 1:
            ids = np.arange(size, dtype=np.int64)[:, None]
            # the general model's unigrams; a word it lacks gets the phrases' share of its
            # own frequency there, taken from the others
            prob = g_prob[0].copy()
            if extra:
                unigrams = np.array([counts[0].get((i,), 0) for i in range(size)], float)
                new = weight * unigrams[len(general.words) :] / unigrams.sum()
                prob[: len(general.words)] *= 1 - new.sum()
                prob[len(general.words) :] = new
            if anywhere > 0:
                keep, own_p = phrase_share(ids)
                prob = keep * prob + own_p
            prob[index["<s>"]] = 0.0  # never predicted (ARPA's -99)
            tables.append(_Table(ids, prob, size))
            continue
        if counts[n - 1]:  # the phrases' n-grams the general model lacks
            own = np.array(list(counts[n - 1]), dtype=np.int64)
            _, there = g_tables[n - 1].find(_keys(own, size))
            ids = np.concatenate([ids, own[~there]])
        keep, own_p = phrase_share(ids)
        tables.append(_Table(ids, keep * general_p(ids) + own_p, size))

    # Backoff weights, so each context's probabilities sum to one:
    # bo(h) = (1 - sum over explicit w of p(w|h)) / (1 - sum over the same w of p(w|h')).
    def mixed_p(ids: np.ndarray) -> np.ndarray:
        n = ids.shape[1]
        if n == 1:
            return tables[0].prob[ids[:, 0]]
        at, there = tables[n - 1].find(_keys(ids, size))
        out = np.where(there, tables[n - 1].prob[at], 0.0)
        miss = ~there
        if miss.any():
            cat, cthere = tables[n - 2].find(_keys(ids[miss, :-1], size))
            bo = np.where(cthere, tables[n - 2].backoff[cat], 1.0)
            out[miss] = bo * mixed_p(ids[miss, 1:])
        return out

    for n in (2, 3):  # contexts of order 1 (unigrams) then 2 (bigrams)
        table, contexts_table = tables[n - 1], tables[n - 2]
        context_at, there = contexts_table.find(_keys(table.ids[:, :-1], size))
        if not there.all():
            raise RuntimeError(f"{(~there).sum()} {n}-grams without their context")
        explicit = np.bincount(context_at, weights=table.prob, minlength=len(contexts_table.key))
        lower = np.bincount(
            context_at, weights=mixed_p(table.ids[:, 1:]), minlength=len(contexts_table.key)
        )
        has = np.bincount(context_at, minlength=len(contexts_table.key)) > 0
        numerator = np.maximum(1.0 - explicit, 1e-7)
        denominator = np.maximum(1.0 - lower, 1e-7)
        contexts_table.backoff = np.where(has, numerator / denominator, 1.0)
    return words, tables


def write_arpa(words: list[str], tables: list[_Table], path: Path) -> None:
    def log10(values: np.ndarray) -> np.ndarray:
        return np.where(values > 0, np.log10(np.maximum(values, 1e-99)), -99.0)

    with open(path, "w", encoding="utf-8") as out:
        out.write("\\data\\\n")
        for n, table in enumerate(tables, 1):
            out.write(f"ngram {n}={len(table.key)}\n")
        for n, table in enumerate(tables, 1):
            out.write(f"\n\\{n}-grams:\n")
            logp, logbo = log10(table.prob), log10(table.backoff)
            for row in range(len(table.key)):
                gram = " ".join(words[i] for i in table.ids[row])
                if n < 3:
                    out.write(f"{logp[row]:.6f}\t{gram}\t{logbo[row]:.6f}\n")
                else:
                    out.write(f"{logp[row]:.6f}\t{gram}\n")
        out.write("\n\\end\\\n")


def to_binary(arpa: Path, target: Path) -> None:
    """ARPA text → pocketsphinx's binary trie (loads ~10x faster, and smaller)."""
    from pocketsphinx import Config, LogMath, NGramModel

    model = NGramModel(Config(), LogMath(1.0001), str(arpa))
    model.write(str(target), NGramModel.str_to_type("bin"))


# -- building and caching -----------------------------------------------------------------------


def cache_name(phrases: list[list[str]], weight: float, anywhere: float = ANYWHERE_WEIGHT) -> str:
    """The cached model's file name: a hash of everything it is made from. The phrases are
    the list as read, before the ones with unknown words are left out: that depends only on
    the dictionary, named here by its file, so finding a cached model reads no dictionary."""
    digest = hashlib.sha256()
    made = [str(VERSION), repr(weight), repr(anywhere)]
    for source in (general_lm_path(), dictionary_path()):
        stat = source.stat()
        made += [str(source), str(stat.st_size), str(stat.st_mtime_ns)]
    digest.update((" ".join(made) + "\n").encode())
    for words in phrases:
        digest.update((" ".join(words) + "\n").encode())
    return f"{CACHE_PREFIX}{digest.hexdigest()[:16]}.lm.bin"


def build(
    phrases: list[list[str]],
    target: Path,
    weight: float = PHRASE_WEIGHT,
    anywhere: float = ANYWHERE_WEIGHT,
) -> None:
    """Make the mixed model at `target` (in this process: ~1 min, ~1.5 GB at its peak)."""
    started = time.monotonic()
    general = GeneralModel(general_lm_path())
    words, tables = mix(general, PhraseModel(phrases), weight, anywhere)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work, whole(target) as partial:
        arpa = Path(work) / "mixed.arpa"
        write_arpa(words, tables, arpa)
        to_binary(arpa, partial)  # whole or absent: a crash mid-build leaves no bad cache
    log.info("phrase language model built in %.0f s: %s", time.monotonic() - started, target)


def ensure(
    phrase_list: str | os.PathLike,
    cache_dir: Path = CACHE_DIR,
    weight: float = PHRASE_WEIGHT,
    anywhere: float = ANYWHERE_WEIGHT,
) -> Path:
    """The mixed model for a phrase list, built in a child process unless already cached.
    Processes that want the same model at once (a cluster's nodes starting) build it once:
    the others wait on the cache's lock, then find it. Each use marks the file as used; a
    build removes the models nobody used for `UNUSED_DAYS` (the cache keeps one per list and
    weight it was asked for, ~27 MB each)."""
    target = Path(cache_dir) / cache_name(read_phrases(phrase_list), weight, anywhere)
    if _used(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock, _locked(lock):
        if _used(target):
            return target
        log.info("building the phrase language model for %s (once; ~1 min)", phrase_list)
        command = [sys.executable, "-m", "server.pipeline.phrase_lm", str(phrase_list)]
        command += ["--target", str(target), "--weight", repr(weight)]
        command += ["--anywhere", repr(anywhere)]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0 or not target.exists():
        raise RuntimeError(f"building the phrase language model failed: {done.stderr[-2000:]}")
    prune(target.parent)
    return target


def _used(model: Path) -> bool:
    """Whether `model` is cached; if so it is marked as used now (its modification time)."""
    try:
        os.utime(model)
    except FileNotFoundError:
        return False
    return True


def prune(cache_dir: Path, now: float | None = None) -> list[Path]:
    """Remove the cached models not used for `UNUSED_DAYS`; returns what was removed."""
    oldest = (time.time() if now is None else now) - UNUSED_DAYS * 86400
    removed = []
    for model in sorted(Path(cache_dir).glob(f"{CACHE_PREFIX}*.lm.bin")):
        with contextlib.suppress(FileNotFoundError):  # another process pruned it first
            if model.stat().st_mtime < oldest:
                model.unlink()
                removed.append(model)
    if removed:
        log.info("phrase language models unused for %d days removed: %d", UNUSED_DAYS, len(removed))
    return removed


@contextlib.contextmanager
def _locked(handle):
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)


def offline() -> None:
    """Make this process unable to open a socket: the build reads only packaged files, and
    so it stays (a model or word list fetched from the network would be a change to refuse)."""
    import socket

    def refuse(*args, **kwargs):
        raise OSError("the phrase model build may not use the network")

    socket.socket.connect = socket.socket.connect_ex = refuse  # type: ignore[method-assign]
    socket.getaddrinfo = socket.create_connection = refuse  # type: ignore[assignment]


def main() -> None:
    offline()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "phrases", nargs="?", default=str(AGENT_PHRASES), help="the phrase list, one a line "
        "(default: the demo agent's)",
    )  # fmt: skip
    parser.add_argument(
        "--target", type=Path, help="build into this file (default: into the cache, if absent)"
    )
    parser.add_argument("--weight", type=float, default=PHRASE_WEIGHT)
    parser.add_argument("--anywhere", type=float, default=ANYWHERE_WEIGHT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.target is None:
        print(ensure(args.phrases, CACHE_DIR, args.weight, args.anywhere))
    else:
        phrases = usable_phrases(read_phrases(args.phrases))
        build(phrases, args.target, args.weight, args.anywhere)


if __name__ == "__main__":
    main()
