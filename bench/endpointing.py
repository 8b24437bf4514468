"""Endpointing: how long the turn detector waits after the user's last sound, and how often it
cuts a sentence at a pause inside it. Today's fixed timer and the turn-end model, side by side.

Two sets of synthetic speech (Piper; no recorded speech offline), from tests/support/sentences.py:
- 52 finished questions, each followed by silence: endpointing = from the last voiced 20 ms
  frame to the turn's end. With the model that is the silence waited before asking it plus the
  time its answer took here (measured for every answer, as the server would wait for it);
- 24 sentences with a hesitation inside (a comma where the voice pauses), the pause made 300,
  450 and 600 ms long: a cut-off is a turn that ended inside the pause.

The detector is told the transcript as the recogniser would (the words before the pause during
it, the whole sentence from 300 ms after the voice resumes: its interim transcript's measured
lag): the text veto (turns.py) reads it. The real recogniser's
interim transcript lags and errs; bench/latency.py runs it for real.

Audio goes through the real `TurnDetector` 20 ms at a time. The model's wall time here is
inflated by other work on the machine, so a second p50 counts its CPU time instead (its thread's
own CPU time: what it costs when it has a core to itself). The model's answers are computed
once per distinct audio and reused across thresholds (same audio, same answer), so a threshold
sweep costs no more than one pass. Ran on a shared 2-core machine: model times are under
contention.

    python bench/endpointing.py [--thresholds 0.5,0.7,0.9] [--pauses 0.3,0.45,0.6] [--modes ...]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time

from common import median, p95, print_table, save

from server.pipeline import endpointing
from server.pipeline.turns import SpeechEnded, SpeechStarted, TurnDetector, TurnSettings
from tests.support.sentences import ASKED, PAUSED
from tests.support.speech import silence, speak, voiced_span, with_pause

RATE = 16000
FRAME = 640  # 20 ms
LEAD_S, TAIL_S = 0.4, 1.5
# pocketsphinx's interim transcript trails the voice: measured on Piper questions fed 20 ms at a
# time, it lacked the last word 160 ms after it and had it 300 ms after (speculation.py).
INTERIM_LAG_S = 0.3

# audio digest → (probability, wall seconds, CPU seconds of the calling thread)
_answers: dict[bytes, tuple[float, float, float]] = {}
_original = endpointing.SmartTurn.probability


def remembered_probability(self, pcm: bytes) -> float:
    key = hashlib.sha1(pcm).digest()
    if key not in _answers:
        started, cpu = time.perf_counter(), time.thread_time()
        probability = _original(self, pcm)
        _answers[key] = (probability, time.perf_counter() - started, time.thread_time() - cpu)
    remembered_probability.last = _answers[key][1:]
    return _answers[key][0]


remembered_probability.last = None
endpointing.SmartTurn.probability = remembered_probability


def turns_of(pcm: bytes, settings: TurnSettings, hints=()) -> list[dict]:
    """`hints`: (stream second, transcript) — the interim transcript the detector is told from
    that second on (an ideal recogniser: the words spoken so far, at once)."""
    detector = TurnDetector(settings)
    found, asked = [], (0.0, 0.0)
    hints = list(hints)
    for offset in range(0, len(pcm), FRAME):
        while hints and hints[0][0] <= offset / 2 / RATE:
            detector.hint(hints.pop(0)[1])
        remembered_probability.last = None
        events = detector.feed(pcm[offset : offset + FRAME])
        asked = remembered_probability.last or asked
        for event in events:
            if isinstance(event, SpeechStarted):
                asked = (0.0, 0.0)
            if isinstance(event, SpeechEnded):
                now = (offset + FRAME) / 2 / RATE
                waited = now - event.speech_end_s
                by_model = settings.end_model != "off" and waited < settings.max_silence_ms / 1000
                wall, cpu = asked if by_model else (0.0, 0.0)
                found.append(
                    {"speech_end_s": event.speech_end_s, "ended_s": now,
                     "endpointing_ms": 1000 * (waited + wall),
                     "endpointing_free_core_ms": 1000 * (waited + cpu), "by_model": by_model}
                )  # fmt: skip
    return found


def modes(thresholds: list[float], asks: list[int]) -> dict[str, TurnSettings]:
    chosen = {"timer 400 ms (today)": TurnSettings()}
    chosen["Silero VAD + timer 400 ms"] = TurnSettings(vad="silero")
    alone = {"second_look_ms": 0, "text_veto": False}  # the model alone, asked once
    for ask in asks:
        for threshold in thresholds:
            chosen[f"model > {threshold:g} at {ask} ms"] = TurnSettings(
                end_model="smart-turn",
                model_wait=True,
                model_threshold=threshold,
                model_silence_ms=ask,
                **alone,
            )
    silero_model = {"vad": "silero", "end_model": "smart-turn", "model_wait": True}
    chosen[f"Silero + model > 0.9 at {asks[0]} ms (previous default)"] = TurnSettings(
        model_silence_ms=asks[0], **silero_model, **alone
    )
    chosen["... + second look at 450 ms"] = TurnSettings(
        model_silence_ms=asks[0], **silero_model, text_veto=False
    )
    chosen["... + its 'finished' overruled by open words (server default)"] = TurnSettings(
        model_silence_ms=asks[0], **silero_model
    )
    return chosen


def measure(settings: TurnSettings, pauses: list[float]) -> dict:
    waits, free, early = [], [], 0
    for text in ASKED:
        speech = speak(text)
        turns = turns_of(silence(LEAD_S) + speech + silence(TAIL_S), settings, [(0, text)])
        waits.append(turns[-1]["endpointing_ms"] if turns else float("nan"))
        free.append(turns[-1]["endpointing_free_core_ms"] if turns else float("nan"))
        early += bool(turns) and turns[-1]["by_model"]
    cut, cases = [], 0
    for text in PAUSED:
        for pause in pauses:
            pcm, pause_at = with_pause(text, pause)
            last_voice = LEAD_S + voiced_span(pcm)[1]
            resumed_words_known = LEAD_S + pause_at + pause + INTERIM_LAG_S
            said = [(0, text.split(",")[0]), (resumed_words_known, text)]
            turns = turns_of(silence(LEAD_S) + pcm + silence(TAIL_S), settings, said)
            cases += 1
            if any(t["speech_end_s"] < last_voice - 0.15 for t in turns):
                cut.append([text, pause])
    return {
        "endpointing_p50_ms": round(median(waits), 1),
        "endpointing_p95_ms": round(p95(waits), 1),
        "endpointing_max_ms": round(max(waits), 1),
        "endpointing_free_core_p50_ms": round(median(free), 1),
        "ended_by_the_model": early,
        "questions": len(ASKED),
        "cut_off": len(cut),
        "paused_cases": cases,
        "cut_off_cases": cut,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--thresholds", default="0.5,0.8,0.9")
    parser.add_argument("--asks", default="160", help="silences (ms) at which to ask the model")
    parser.add_argument("--pauses", default="0.3,0.45,0.6")
    parser.add_argument("--modes", default="", help="only modes whose name contains one of these")
    args = parser.parse_args()
    thresholds = [float(t) for t in args.thresholds.split(",")]
    pauses = [float(p) for p in args.pauses.split(",")]
    endpointing.SmartTurn().warm()
    results = {}
    asks = [int(a) for a in args.asks.split(",")]
    wanted = [w for w in args.modes.split(",") if w]
    for name, settings in modes(thresholds, asks).items():
        if wanted and not any(w in name for w in wanted):
            continue
        results[name] = measure(settings, pauses)
        print(f"  {name}: {results[name]['endpointing_p50_ms']:.0f} ms, "
              f"{results[name]['cut_off']} cut off")  # fmt: skip
    model_ms = [1000 * wall for _, wall, _ in _answers.values()]
    model_cpu_ms = [1000 * cpu for _, _, cpu in _answers.values()]
    rows = [
        [
            name,
            r["endpointing_p50_ms"],
            r["endpointing_free_core_p50_ms"],
            r["endpointing_p95_ms"],
            f"{r['ended_by_the_model']}/{r['questions']}",
            f"{r['cut_off']}/{r['paused_cases']}",
        ]
        for name, r in results.items()
    ]
    print_table(
        f"Endpointing (synthetic Piper speech; {len(ASKED)} finished questions, "
        f"{len(PAUSED)} sentences x pauses {args.pauses} s)",
        [
            "mode",
            "p50 ms",
            "p50 ms, model on a free core",
            "p95 ms",
            "ended by the model",
            "cut off mid-sentence",
        ],
        rows,
    )
    if model_ms:
        print(
            f"\n  Smart Turn v3.2, one thread: {len(model_ms)} answers, p50 "
            f"{statistics.median(model_ms):.0f} ms, p95 {p95(model_ms):.0f} ms wall (under "
            f"contention); CPU p50 {statistics.median(model_cpu_ms):.0f} ms, "
            f"p95 {p95(model_cpu_ms):.0f} ms"
        )
    save(
        "endpointing",
        {
            "note": "synthetic Piper speech; endpointing counts the model's own time; ran on "
            "a shared 2-core machine under contention",
            "pauses_s": pauses,
            "model_inference_ms": {
                "count": len(model_ms),
                "p50": round(statistics.median(model_ms), 1) if model_ms else None,
                "p95": round(p95(model_ms), 1) if model_ms else None,
                "cpu_p50": round(statistics.median(model_cpu_ms), 1) if model_ms else None,
                "cpu_p95": round(p95(model_cpu_ms), 1) if model_ms else None,
            },
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
