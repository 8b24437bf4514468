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

    python bench/wer.py [--profiles baseline,narrowband,tuned] [--sentences 52]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor

from common import print_table, save

from server.pipeline.audio import resample
from server.pipeline.stt import DECODER_CONFIG, PROFILES, AudioPreparation, new_decoder
from server.pipeline.tts.espeak import EspeakTTS
from tests.support.sentences import ASKED, edit_distance, words
from tests.support.speech import add_noise, silence, speak

CHUNK_MS = 100
SNR_DB = 10.0


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


def decode(decoder, pcm: bytes, profile: str) -> str:
    """As a worker process does: 100 ms chunks, the profile's audio preparation, then reset."""
    prepare = AudioPreparation(profile)
    decoder.start_utt()
    chunk = 16000 * 2 * CHUNK_MS // 1000
    for offset in range(0, len(pcm), chunk):
        audio = prepare.process(pcm[offset : offset + chunk])
        if audio:
            decoder.process_raw(audio, False, False)
    tail = prepare.process(b"", final=True)
    if tail:
        decoder.process_raw(tail, False, False)
    decoder.end_utt()
    found = decoder.hyp()
    decoder.reinit_feat()
    return found.hypstr if found else ""


def condition(voice: str, rate: int, noisy: bool, profiles: list[str], sentences: list[str]):
    """Every profile on one condition's audio: one result row per profile."""
    audio = [utterance(voice, t, rate, noisy, seed=n) for n, t in enumerate(sentences)]
    seconds = sum(len(a) for a in audio) / 32000
    rows = []
    for profile in profiles:
        decoder = new_decoder()
        errors = reference = 0
        misheard = []
        started = time.process_time()
        for text, pcm in zip(sentences, audio, strict=True):
            heard = decode(decoder, pcm, profile)
            ref, hyp = words(text), words(heard)
            wrong = edit_distance(ref, hyp)
            errors, reference = errors + wrong, reference + len(ref)
            if wrong:
                misheard.append([text, heard])
        cost = (time.process_time() - started) / seconds
        rows.append(
            {
                "voice": voice,
                "rate": rate,
                "noise": f"{SNR_DB:.0f} dB" if noisy else "clean",
                "profile": profile,
                "wer_pct": round(100 * errors / reference, 1),
                "sentences_wrong": len(misheard),
                "cpu_per_audio_s": round(cost, 4),
                "misheard": misheard,
            }
        )
        print(
            f"  {voice:6s} {rate // 1000:2d} kHz {rows[-1]['noise']:5s} {profile:10s}"
            f"  WER {rows[-1]['wer_pct']:5.1f}%  cost {cost:.3f}x",
            flush=True,
        )
    return rows


def run(profiles: list[str], sentences: list[str], jobs: int) -> list[dict]:
    """The eight conditions, `jobs` at a time in separate processes (decoding is CPU-bound)."""
    conditions = [
        (voice, rate, noisy)
        for voice in VOICES
        for rate in (16000, 8000)
        for noisy in (False, True)
    ]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        done = [pool.submit(condition, *c, profiles, sentences) for c in conditions]
        return [row for future in done for row in future.result()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profiles", default="baseline,tuned")
    parser.add_argument("--sentences", type=int, default=len(ASKED))
    parser.add_argument("--jobs", type=int, default=2, help="conditions decoded at once")
    args = parser.parse_args()
    profiles = args.profiles.split(",")
    sentences = ASKED[: args.sentences]
    print(f"{len(sentences)} sentences, synthetic speech (no recorded speech offline)")
    rows = run(profiles, sentences, args.jobs)
    table = []
    for voice in VOICES:
        for rate in (16000, 8000):
            for noise in ("clean", f"{SNR_DB:.0f} dB"):
                cells = [
                    r for r in rows if (r["voice"], r["rate"], r["noise"]) == (voice, rate, noise)
                ]
                line = [f"{voice} {rate // 1000} kHz {noise}"]
                for r in cells:
                    line += [f"{r['wer_pct']:.1f}", f"{r['cpu_per_audio_s']:.3f}"]
                table.append(line)
    header = ["condition (synthetic speech)"]
    for profile in profiles:
        header += [f"{profile} WER %", f"{profile} CPU/s"]
    print_table(
        "Word error rate (synthetic speech: no recorded speech offline), CPU s per audio s",
        header,
        table,
    )
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
            "results": rows,
        },
    )


if __name__ == "__main__":
    main()
