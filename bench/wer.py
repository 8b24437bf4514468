"""Word error rate of the speech recogniser, per voice, sample rate and noise; decode cost.

The speech is synthetic — no recorded speech is available offline — made from the fixed set of
52 questions in tests/support/sentences.py with two voices: Piper (neural, natural; the voice
the tests speak with) and espeak-ng (formant synthesis, robotic: a stand-in for a voice unlike
the recogniser's training data). Each is heard at 16 kHz (our client) and at 8 kHz (the
official SDK's rate: made at 8 kHz and brought to 16 kHz by the pipeline's own resampler, as the
session does), clean and with pink noise added at 10 dB SNR (measured over the voiced part).

Audio is fed in 100 ms chunks to one decoder in this process, reset between utterances exactly
as the worker processes do. Decode cost is CPU seconds per second of audio (`time.process_time`),
the figure the STT worker capacity under load follows. The profiles of server/pipeline/stt.py
(baseline and tuned unless --profiles says otherwise) run on the same audio, side by side;
conditions run two at a time in separate processes (--jobs).

Each line also gives the word errors of the hypothesis taken 0.3 s into the silence after
the speech, before the final pass, and how many sentences it differs from the final in: what a
turn that ends at a turn-end look takes as its final transcript (STT_FINAL_FROM_LOOK).

The first row decodes with the general language model (`STT_PHRASES=none`; a server with the
demo agent decodes with its phrases by default: `--phrases agent` is that row). Decoder options
(`--variant ds=2,topn=2`, repeatable) run beside it on the same audio, so a cheaper
configuration's word errors and decode cost read side by side; the cost is one stream's CPU per
second of audio (0.1: a core decodes ten streams in real time).

Phrase lists (`--phrases agent`, `--phrases bench/phrases_unrelated.txt:0.3`, repeatable; the
`:weight` is the phrase model's share, PHRASE_WEIGHT by default) run the general language model
mixed with one made from the list (server/pipeline/phrase_lm.py, STT_PHRASES) beside the
general one. `agent` is the demo agent's own list, server/agent/phrases.txt, which never holds
these sentences. The word errors are also given apart for the sentences whose topic the demo
agent's list covers (the agent's own intent recogniser, server/agent/brain.py, finds an intent
in them: 14 of the 52) and for the others (38), so the effect on speech the phrases do not
cover reads beside the effect on speech they do.

    python bench/wer.py [--profiles baseline,narrowband,tuned] [--sentences 52]
                        [--variant OPTIONS ...] [--phrases agent[:WEIGHT] ...]
                        [--voices piper] [--rates 16000] [--noise clean]
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from common import print_table, save

from server.agent.brain import intent_of
from server.pipeline import phrase_lm
from server.pipeline.audio import resample
from server.pipeline.stt import DECODER_CONFIG, PROFILES, AudioPreparation, new_decoder
from server.pipeline.tts.espeak import EspeakTTS
from tests.support.sentences import ASKED, edit_distance, words
from tests.support.speech import add_noise, silence, speak

CHUNK_MS = 100
SNR_DB = 10.0
GENERAL = "general model"  # the first row: DECODER_CONFIG, STT_PHRASES=none


_espeak = EspeakTTS()


def espeak(text: str, rate: int) -> bytes:
    _espeak.warm()
    return resample(_espeak._synthesize(text), _espeak._native_rate, rate)


VOICES = {"piper": lambda text, rate: speak(text, rate), "espeak": espeak}


def utterance(voice: str, text: str, rate: int, noisy: bool, seed: int) -> bytes:
    """What the recogniser hears: speech with a little silence around it, at 16 kHz."""
    pcm = silence(0.3, rate) + VOICES[voice](text, rate) + silence(0.3, rate)
    if noisy:
        pcm = add_noise(pcm, rate, SNR_DB, seed)
    return resample(pcm, rate, 16000) if rate != 16000 else pcm


def decode(decoder, pcm: bytes, profile: str) -> tuple[str, str]:
    """As a worker process does: 100 ms chunks, the profile's audio preparation, then reset.
    Both the final transcript and the hypothesis before it, 0.3 s into the silence after the
    speech: what a turn ending at a look takes as its final (STT_FINAL_FROM_LOOK)."""
    prepare = AudioPreparation(profile)
    decoder.start_utt()
    chunk = 16000 * 2 * CHUNK_MS // 1000
    for offset in range(0, len(pcm), chunk):
        audio = prepare.process(pcm[offset : offset + chunk])
        if audio:
            decoder.process_raw(audio, False, False)
    found = decoder.hyp()
    at_pause = found.hypstr if found else ""
    tail = prepare.process(b"", final=True)
    if tail:
        decoder.process_raw(tail, False, False)
    decoder.end_utt()
    found = decoder.hyp()
    decoder.reinit_feat()
    return (found.hypstr if found else ""), at_pause


def parse_variant(spec: str) -> dict:
    """`ds=2,topn=2` → decoder options over DECODER_CONFIG (numbers as numbers)."""
    options = {}
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition("=")
        for kind in (int, float):
            try:
                options[key] = kind(value)
                break
            except ValueError:
                continue
        else:
            options[key] = {"true": True, "false": False}.get(value.lower(), value)
    return options


def phrase_variant(spec: str) -> tuple[str, Path]:
    """`agent`, `agent:0.3`, `agent:0.1:0.05` or `path/list.txt:0.2` → (its variant, its
    model, built or cached): the phrases' share in their contexts, then anywhere else."""
    name, _, shares = spec.partition(":")
    weight, _, anywhere = shares.partition(":")
    source = phrase_lm.AGENT_PHRASES if name == "agent" else Path(name)
    share = float(weight) if weight else phrase_lm.PHRASE_WEIGHT
    elsewhere = float(anywhere) if anywhere else phrase_lm.ANYWHERE_WEIGHT
    print(f"phrase model for {source} ({share:g}, {elsewhere:g}): building or cached", flush=True)
    model = phrase_lm.ensure(source, phrase_lm.CACHE_DIR, share, elsewhere)
    return f"phrases={name}" + (f"@{shares}" if shares else ""), model


def covered(text: str) -> bool:
    """Does the demo agent's phrase list cover the sentence's topic (the agent finds an
    intent in it)?"""
    return intent_of(text) != "other"


def condition(
    voice: str,
    rate: int,
    noisy: bool,
    profiles: list[str],
    sentences: list[str],
    variants: list[str] = ("",),
    models: dict[str, str] | None = None,
):
    """Every profile and decoder variant on one condition's audio: one row per pair.
    `models`: a phrase variant's language model file."""
    audio = [utterance(voice, t, rate, noisy, seed=n) for n, t in enumerate(sentences)]
    seconds = sum(len(a) for a in audio) / 32000
    rows = []
    for profile, variant in [(p, v) for v in variants for p in profiles]:
        options = parse_variant(variant) if not variant.startswith("phrases=") else {}
        if variant.startswith("phrases="):
            options["lm"] = str((models or {})[variant])
        decoder = new_decoder(options)
        errors = reference = errors_at_pause = differ = 0
        by_topic = {True: [0, 0], False: [0, 0]}  # covered or not: errors, reference words
        misheard = []
        started = time.process_time()
        for text, pcm in zip(sentences, audio, strict=True):
            heard, at_pause = decode(decoder, pcm, profile)
            ref, hyp = words(text), words(heard)
            wrong = edit_distance(ref, hyp)
            errors, reference = errors + wrong, reference + len(ref)
            topic = by_topic[covered(text)]
            topic[0], topic[1] = topic[0] + wrong, topic[1] + len(ref)
            errors_at_pause += edit_distance(ref, words(at_pause))
            differ += words(at_pause) != hyp
            if wrong:
                misheard.append([text, heard])
        cost = (time.process_time() - started) / seconds
        rows.append(
            {
                "voice": voice,
                "rate": rate,
                "noise": f"{SNR_DB:.0f} dB" if noisy else "clean",
                "profile": profile,
                "decoder": variant or GENERAL,
                "wer_pct": round(100 * errors / reference, 1),
                # apart: sentences whose topic the demo agent's phrase list covers, and others
                "wer_covered_pct": _pct(*by_topic[True]),
                "wer_other_pct": _pct(*by_topic[False]),
                "sentences_wrong": len(misheard),
                # the hypothesis 0.3 s into the silence, before the final (STT_FINAL_FROM_LOOK)
                "wer_at_pause_pct": round(100 * errors_at_pause / reference, 1),
                "at_pause_differs_from_final": differ,
                "cpu_per_audio_s": round(cost, 4),
                "misheard": misheard,
            }
        )
        print(
            f"  {voice:6s} {rate // 1000:2d} kHz {rows[-1]['noise']:5s} {profile:10s}"
            f" {variant or GENERAL:28s}"
            f"  WER {rows[-1]['wer_pct']:5.1f}% (covered {rows[-1]['wer_covered_pct']:5.1f}%,"
            f" other {rows[-1]['wer_other_pct']:5.1f}%)  cost {cost:.3f}x"
            f"  (at the pause {rows[-1]['wer_at_pause_pct']:5.1f}%, {differ} differ)",
            flush=True,
        )
    return rows


def _pct(errors: int, reference: int) -> float | None:
    return round(100 * errors / reference, 1) if reference else None


def run(
    profiles: list[str],
    sentences: list[str],
    jobs: int,
    variants: list[str] = ("",),
    conditions: list[tuple] | None = None,
    models: dict[str, str] | None = None,
) -> list[dict]:
    """The conditions (all eight by default), `jobs` at a time in separate processes
    (decoding is CPU-bound)."""
    conditions = conditions or CONDITIONS
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        done = [
            pool.submit(condition, *c, profiles, sentences, variants, models) for c in conditions
        ]
        return [row for future in done for row in future.result()]


CONDITIONS = [
    (voice, rate, noisy) for voice in VOICES for rate in (16000, 8000) for noisy in (False, True)
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profiles", default="baseline,tuned")
    parser.add_argument("--sentences", type=int, default=len(ASKED))
    parser.add_argument("--jobs", type=int, default=2, help="conditions decoded at once")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="OPTIONS",
        help="decoder options over the configured ones, e.g. ds=2,topn=2 (repeatable): "
        "each runs beside the general model's row",
    )
    parser.add_argument(
        "--phrases",
        action="append",
        default=[],
        metavar="LIST[:WEIGHT]",
        help="the general language model mixed with one from a phrase list (`agent`: the demo "
        "agent's; or a file), beside the general one (repeatable; WEIGHT: the phrase model's "
        f"share, {phrase_lm.PHRASE_WEIGHT} by default)",
    )
    parser.add_argument("--voices", default=",".join(VOICES), help="of " + ",".join(VOICES))
    parser.add_argument("--rates", default="16000,8000")
    parser.add_argument("--noise", default="clean,noisy", help="clean, noisy or both")
    args = parser.parse_args()
    profiles = args.profiles.split(",")
    models = dict(phrase_variant(spec) for spec in args.phrases)  # built once, before the runs
    variants = ["", *args.variant, *models]
    sentences = ASKED[: args.sentences]
    conditions = [
        (voice, rate, noisy)
        for voice, rate, noisy in CONDITIONS
        if voice in args.voices.split(",")
        and str(rate) in args.rates.split(",")
        and ("noisy" if noisy else "clean") in args.noise.split(",")
    ]
    print(f"{len(sentences)} sentences, synthetic speech (no recorded speech offline)")
    rows = run(profiles, sentences, args.jobs, variants, conditions, models)
    # One row per decoder and profile, one WER and one cost column per condition.
    names = [
        f"{voice} {rate // 1000}k {'noisy' if noisy else 'clean'}"
        for voice, rate, noisy in conditions
    ]
    table = []
    for variant in variants:
        for profile in profiles:
            line = [profile, variant or GENERAL]
            for voice, rate, noisy in conditions:
                noise = f"{SNR_DB:.0f} dB" if noisy else "clean"
                (r,) = [
                    r
                    for r in rows
                    if (r["voice"], r["rate"], r["noise"], r["profile"], r["decoder"])
                    == (voice, rate, noise, profile, variant or GENERAL)
                ]
                line += [f"{r['wer_pct']:.1f}", f"{r['wer_covered_pct']}/{r['wer_other_pct']}"]
                line += [f"{r['cpu_per_audio_s']:.3f}"]
            table.append(line)
    header = ["profile", "decoder"]
    for name in names:
        header += [f"{name} WER %", "covered/other", "CPU/s"]
    print_table(
        "Word error rate (synthetic speech: no recorded speech offline), "
        "CPU s per audio s (one stream)",
        header,
        table,
    )
    load = os.getloadavg()
    print(f"load average (1, 5, 15 min) at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    save(
        "wer",
        {
            "note": "synthetic speech only (Piper and espeak-ng voices): no recorded speech "
            "is available offline; ran on a shared 2-core machine under contention, so the "
            "CPU figures are indicative",
            "sentences": sentences,
            "snr_db": SNR_DB,
            "decoder": DECODER_CONFIG,
            "profiles": {p: PROFILES[p] for p in profiles},
            "variants": {v: parse_variant(v) for v in variants if v and v not in models},
            "phrase_models": {v: str(path) for v, path in models.items()},
            "covered_sentences": [s for s in sentences if covered(s)],
            "load_average_at_end": list(load),
            "results": rows,
        },
    )


if __name__ == "__main__":
    main()
