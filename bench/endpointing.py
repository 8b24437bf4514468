"""Endpointing: how long the turn detector waits after the user's last sound, and how often it
cuts a sentence at a pause inside it. The fixed timer and the turn-end model, side by side.

Two sets of synthetic speech (Piper; no recorded speech offline), from tests/support/sentences.py:
- 52 finished questions, each followed by silence: endpointing = from the last voiced frame to
  the turn's end. With the model that is the silence waited before asking it plus the time its
  answer took here (measured for every answer, as the server would wait for it), or, when the
  turn ends on audio that came later (a finished confirmed by the next frame), whichever of the
  two came last;
- 24 sentences with a hesitation inside (a comma where the voice pauses), the pause made 300,
  450 and 600 ms long: a cut-off is a turn that ended inside the pause.

When the detector asks for the words (WordsWanted: the model heard an end), it is told what the
real recogniser heard: pocketsphinx, configured as the server's, decoding the turn's audio as
the session feeds it, asked for its hypothesis at that moment (its errors included). One mode
never tells it (`WITHOUT_WORDS`): the path a node under load takes when the recogniser is
behind, every look deciding on the model alone at `late_words_end_ms` of silence (turns.py).

Audio goes through the real `TurnDetector` 20 ms at a time. The model's wall time here is
inflated by other work on the machine, so the first figures count its CPU time instead (its
thread's own CPU time: what it costs when it has a core to itself); the wall-clock figures
follow. The model's answers are computed once per distinct audio and reused across modes (same
audio, same answer). Ran on a shared 2-core machine: say the load average beside the figures.

`--second-looks 288:700,450:500,...` compares the second look's silence and the weak words' wait
(turns.py) beside the default. Run of 2026-11-30 (tuned set, load 10-14; model-CPU p95 / wall
p95 of the 52 questions, cut-offs of the 72 hesitations): the p95 is not the second look's
time but what follows it. Questions whose words end only weakly (P(end) 0.09-0.14: "what can
you do", "send a message to my mother", "with the doctor", "credit card") are held to the
weak words' 700 ms, and two end at the 1 s fallback ("how much does the cost", P 0.070 under
`sentence_end_min`; "bet is not what I said", the model 0.31 at 480 ms). At 40 ms chunks:
default (450:700) 0/72, p95 728 / 761 ms; 288:700 0/72, 728 / 946 ms (asked that early the
model doubts more questions, which then wait for the 1 s fallback: no third look); 384:700
2/72 ("I would like to order two, large pizzas", words "to war two" P 0.229 at 384 ms); 450:500
1/72, 561 / 761 ms (the 600 ms pause of "somewhere near," heard "so more there", P 0.115: a
weak-words wait must outlast the longest hesitation); 384:500 3/72; 288:500 0/72, 544 / 946 ms.
100 ms chunks alike (default 748 / 1026 ms). So neither an earlier second look nor a shorter
weak-words wait is safe or better on the tuned set; they were not taken to the held-out sets.
The five questions of bench/latency.py all end at the first look here (170-261 ms).

`--clear-confirms 128,160,192` compares the silences at which clear words that let a less sure
voice end the turn at the first look are heard again (turns.py; endpointing.py has the figures).
`--middle-clear-words 0.7,0.75,0.8,0.85` compares the bars clear words lower the middle look's
to, and `--vetoed-waits 700,800` the silences at which words vetoing a voice the model is sure
of at the second look end the turn (turns.py; endpointing.py has the figures); the modes
from "a middle look" on have the rules after them off. `--look-aheads 0,32,64` compares how long
before its 96 ms of silence the first look is asked (turns.py's `look_ahead_ms`; the figures
of 2026-12-01 are in endpointing.py); the other modes ask it at 96 ms.

    python bench/endpointing.py [--pauses 0.3,0.45,0.6] [--modes ...] [--second-looks ...]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import time

from common import median, p95, print_table, save

from server.config import Settings
from server.pipeline import endpointing, stt
from server.pipeline.turns import (
    SpeechAudio,
    SpeechEnded,
    SpeechStarted,
    TurnDetector,
    TurnSettings,
    WordsWanted,
)
from tests.support.sentences import (
    ASKED,
    ASKED_HELD_OUT,
    ASKED_HELD_OUT_2,
    ASKED_HELD_OUT_3,
    PAUSED,
    PAUSED_HELD_OUT,
    PAUSED_HELD_OUT_2,
    PAUSED_HELD_OUT_3,
)
from tests.support.speech import silence, speak, voiced_span, with_pause

RATE = 16000
FRAME = 640  # 20 ms
LEAD_S, TAIL_S = 0.4, 1.5

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


class Recogniser:
    """The server's recogniser in-process: one utterance per turn, fed what the session feeds
    it, asked for its words when the detector wants them."""

    def __init__(self) -> None:
        self._decoder = stt.new_decoder()
        self._prepare: stt.AudioPreparation | None = None
        self.heard: list[str] = []  # every answer given, for the JSON

    def start(self, pcm: bytes) -> None:
        if self._prepare is not None:
            self._decoder.end_utt()
            self._decoder.reinit_feat()
        self._decoder.start_utt()
        self._prepare = stt.AudioPreparation(stt.DEFAULT_PROFILE)
        self.feed(pcm)

    def feed(self, pcm: bytes) -> None:
        audio = self._prepare.process(pcm) if self._prepare is not None else b""
        if audio:
            self._decoder.process_raw(audio, False, False)

    def words(self) -> str:
        found = self._decoder.hyp()
        self.heard.append(found.hypstr if found else "")
        return self.heard[-1]


def turns_of(
    pcm: bytes,
    settings: TurnSettings,
    recogniser: Recogniser,
    chunk: int = FRAME,
    words: bool = True,
) -> list[dict]:
    """Every turn the detector found in `pcm` fed `chunk` bytes at a time (arriving when their
    last sample was spoken), with its endpointing and the inputs of the decisions that ended it
    (`looks`: the model's answer, the words, P(end), the silence). `words` False: the words
    asked for never come (a recogniser far behind under load: the late-words path)."""
    detector = TurnDetector(settings)
    found, asked, asked_s = [], (0.0, 0.0), 0.0
    for offset in range(0, len(pcm), chunk):
        now = min(offset + chunk, len(pcm)) / 2 / RATE  # when this chunk arrives
        remembered_probability.last = None
        events = detector.feed(pcm[offset : offset + chunk])
        if remembered_probability.last:  # the model was asked on this chunk's arrival
            asked, asked_s = remembered_probability.last, now
        while events:
            event = events.pop(0)
            if isinstance(event, SpeechStarted):
                asked, asked_s = (0.0, 0.0), 0.0
                recogniser.start(event.preroll)
            elif isinstance(event, SpeechAudio):
                recogniser.feed(event.pcm)
            elif isinstance(event, WordsWanted) and words:
                detector.hint(recogniser.words(), event.look)
                events += detector.feed(b"")
            elif isinstance(event, SpeechEnded):
                waited = now - event.speech_end_s
                by_model = settings.end_model != "off" and waited < settings.max_silence_ms / 1000
                wall, cpu = asked if by_model else (0.0, 0.0)
                # The model runs while later audio arrives (the server does not wait for it):
                # the turn ends when both its answer and the audio that confirms it are in.
                found.append(
                    {"speech_end_s": event.speech_end_s, "ended_s": now,
                     "endpointing_ms": 1000 * (max(now, asked_s + wall) - event.speech_end_s),
                     "endpointing_cpu_ms": 1000 * (max(now, asked_s + cpu) - event.speech_end_s),
                     "by_model": by_model, "looks": [str(look) for look in detector.looks]}
                )  # fmt: skip
    return found


# The silences at which `words-again` asks the words once more, compared (the default marked).
WORDS_AGAIN_MS = [192]
# The second look's silence and the weak words' wait, compared ("second:weak" pairs, in ms;
# --second-looks): where the p95 comes from, questions whose words end weakly.
SECOND_LOOKS: list[tuple[int, int]] = []
# The silences of the middle look (turns.py: the model asked again between the first and the
# second look), compared (--middle-looks; the default marked).
MIDDLE_LOOKS: list[int] = [TurnSettings().middle_look_ms]
# The silences at which clear words that let a less sure voice end the turn at the first look
# are asked again (turns.py's `clear_words_confirm_ms`), compared (--clear-confirms; the
# default marked).
CLEAR_CONFIRMS: list[int] = [TurnSettings().clear_words_confirm_ms]
# The bars clear words lower the middle look's to (turns.py's `middle_clear_end_model_min`),
# compared (--middle-clear-words; the default marked).
MIDDLE_CLEAR_BARS: list[float] = [TurnSettings().middle_clear_end_model_min]
# The silences at which, at the second look, words that veto a voice the model is sure of end
# the turn (turns.py's `vetoed_words_end_ms`), compared (--vetoed-waits; the default marked).
VETOED_WAITS: list[int] = [TurnSettings().vetoed_words_end_ms]
# How long before its 96 ms of silence the first look is asked (turns.py's `look_ahead_ms`: its
# answer is computed while the rest of the silence arrives), compared (--look-aheads; the
# default marked).
LOOK_AHEADS: list[int] = [Settings().turn_end_look_ahead_ms]  # the server's (TurnSettings: 0)
# Modes whose words never come: every look decides on the model alone once the silence reaches
# `late_words_end_ms` (turns.py), the path a node under load takes; it must cut no pause.
WITHOUT_WORDS = "the words never come (late-words path, forced)"


def modes() -> dict[str, TurnSettings]:
    default = TurnSettings().words_again_ms
    default_middle = TurnSettings().middle_look_ms
    default_confirm = TurnSettings().clear_words_confirm_ms
    default_bar = TurnSettings().middle_clear_end_model_min
    default_vetoed = TurnSettings().vetoed_words_end_ms
    default_ahead = Settings().turn_end_look_ahead_ms
    no_vetoed_wait = {"vetoed_words_end_ms": 0}  # the last rule, off
    no_middle_clear = {"middle_clear_end_model_min": 1.0, **no_vetoed_wait}  # the rules after
    model = {"vad": "silero", "end_model": "smart-turn", "model_wait": True}
    before = {  # the rules added after the 3/72 run off
        "look_needs_vad_silence": False,
        "clear_end_after_number": False,
        "clear_end_model_min": 0.95,
    }
    previous = {  # the rules added after the 1/72 run off
        "words_at_look": False,
        "finished_vad_frames": 1,
        "weak_words_end_ms": 0,
    }
    model.update(previous)
    today = {"vad": "silero", "end_model": "smart-turn", "model_wait": True}  # the rules now
    today["look_ahead_ms"] = 0  # but the look ahead, compared on its own (LOOK_AHEADS)
    return {
        "TURN_END_MODEL=off: timer 400 ms": TurnSettings(vad="silero"),
        "model > 0.9 at 160 ms alone (the first model)": TurnSettings(
            model_silence_ms=160,
            model_threshold=0.9,
            second_look_ms=0,
            text_veto=False,
            clear_words_confirm_ms=0,  # no words, nothing to confirm (and it would precede)
            **model,
        ),
        "model > 0.95 at 96 ms, > 0.9 at 450 ms, no words": TurnSettings(text_veto=False, **model),
        "... + the words must end a sentence (before)": TurnSettings(**before, **model),
        "... + Silero hears the silence, clear words (previous)": TurnSettings(**model),
        "... + a finished waits for 2 VAD-silent frames": TurnSettings(
            **{**model, "finished_vad_frames": 2}
        ),
        "... + weak words at the 2nd look end at 700 ms (previous)": TurnSettings(
            **today, words_again_ms=0
        ),
        **{
            f"... + vetoing words asked again at {ms} ms{' (previous)' if ms == default else ''}": (
                TurnSettings(**today, words_again_ms=ms, middle_look_ms=0)
            )
            for ms in WORDS_AGAIN_MS
        },
        **{
            f"... + a middle look at {ms} ms{' (default)' if ms == default_middle else ''}": (
                TurnSettings(
                    **today, **no_middle_clear, middle_look_ms=ms, clear_words_confirm_ms=0
                )
            )
            for ms in MIDDLE_LOOKS
        },
        **{
            f"... + clear words for a less sure voice heard again at {ms} ms"
            f"{' (default)' if ms == default_confirm else ''}": TurnSettings(
                **today, **no_middle_clear, clear_words_confirm_ms=ms
            )
            for ms in CLEAR_CONFIRMS
        },
        **{
            f"... + clear words let a voice above {bar:g} end the turn at the middle look"
            f"{' (default)' if bar == default_bar else ''}": TurnSettings(
                **today, **no_vetoed_wait, middle_clear_end_model_min=bar
            )
            for bar in MIDDLE_CLEAR_BARS
        },
        **{
            f"... + at the 2nd look words vetoing a sure voice end the turn at {ms} ms"
            f"{' (default)' if ms == default_vetoed else ''}": TurnSettings(
                **today, vetoed_words_end_ms=ms
            )
            for ms in VETOED_WAITS
        },
        **{
            f"... + the first look asked {ms} ms ahead of its silence"
            f"{' (default)' if ms == default_ahead else ''}": TurnSettings(
                **{**today, "look_ahead_ms": ms}
            )
            for ms in LOOK_AHEADS
        },
        **{
            f"... second look at {second} ms, weak words end at {weak} ms": TurnSettings(
                **today, second_look_ms=second, weak_words_end_ms=weak
            )
            for second, weak in SECOND_LOOKS
        },
        WITHOUT_WORDS: TurnSettings(**today),
    }


def measure(
    settings: TurnSettings,
    pauses: list[float],
    recogniser: Recogniser,
    asked,
    paused,
    chunk: int = FRAME,
    words: bool = True,
) -> dict:
    waits, cpu, early, cut, whole_cut, cases, ends, paused_looks = [], [], 0, [], [], 0, [], []
    for text in asked:
        speech = speak(text)
        last_voice = LEAD_S + voiced_span(speech)[1]
        audio = silence(LEAD_S) + speech + silence(TAIL_S)
        turns = turns_of(audio, settings, recogniser, chunk, words)
        waits.append(turns[-1]["endpointing_ms"] if turns else float("nan"))
        cpu.append(turns[-1]["endpointing_cpu_ms"] if turns else float("nan"))
        early += bool(turns) and turns[-1]["by_model"]
        cuts = [t for t in turns if t["speech_end_s"] < last_voice - 0.15]
        whole_cut += [[text, cuts[0]["looks"]]] if cuts else []
        ends += [[text, round(turns[-1]["endpointing_ms"]), turns[-1]["looks"]]] if turns else []
    for text in paused:
        for pause in pauses:
            pcm, _ = with_pause(text, pause)
            last_voice = LEAD_S + voiced_span(pcm)[1]
            audio = silence(LEAD_S) + pcm + silence(TAIL_S)
            turns = turns_of(audio, settings, recogniser, chunk, words)
            cases += 1
            cuts = [t for t in turns if t["speech_end_s"] < last_voice - 0.15]
            cut += [[text, pause, cuts[0]["looks"]]] if cuts else []
            paused_looks.append([text, pause, [look for t in turns for look in t["looks"]]])
    return {
        "endpointing_cpu_p50_ms": round(median(cpu), 1),
        "endpointing_cpu_p95_ms": round(p95(cpu), 1),
        "endpointing_p50_ms": round(median(waits), 1),
        "endpointing_p95_ms": round(p95(waits), 1),
        "ended_by_the_model": early,
        "questions": len(asked),
        "cut_off": len(cut),
        "paused_cases": cases,
        "cut_off_cases": cut,
        "finished_sentences_cut": len(whole_cut),
        "finished_sentences_cut_cases": whole_cut,
        "finished_sentences_ends": ends,  # every question's last turn: its wait and looks
        "paused_looks": paused_looks,  # every look of every sentence with a pause
    }


# The settings compared value by value: option, the list of values it sets, their type, help.
COMPARED_SETTINGS = (
    ("--words-again-ms", WORDS_AGAIN_MS, int,
     "the silences (ms) at which words that vetoed the first look are asked again"),
    ("--middle-looks", MIDDLE_LOOKS, int,
     "the silences (ms) of the middle look (the model asked again between the first and the "
     "second look), compared"),
    ("--clear-confirms", CLEAR_CONFIRMS, int,
     "the silences (ms) at which clear words that let a less sure voice end the turn at the "
     "first look are asked again, compared"),
    ("--middle-clear-words", MIDDLE_CLEAR_BARS, float,
     "the bars (0.5-1) that words clearly ending a sentence lower the middle look's to, "
     "compared"),
    ("--vetoed-waits", VETOED_WAITS, int,
     "the silences (ms) at which words vetoing a voice the model is sure of at the second "
     "look end the turn, compared"),
    ("--look-aheads", LOOK_AHEADS, int,
     "how long (ms) before its 96 ms of silence the first look is asked, its answer used from "
     "96 ms on, compared"),
)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pauses", default="0.3,0.45,0.6")
    for flag, values, _, text in COMPARED_SETTINGS:
        parser.add_argument(flag, default=",".join(f"{v:g}" for v in values), help=text)
    parser.add_argument(
        "--second-looks",
        default="",
        help="second:weak pairs (ms), e.g. 288:500,384:600: the second look's silence and the "
        "weak words' wait, compared beside the default",
    )
    parser.add_argument("--modes", default="", help="only modes whose name contains one of these")
    parser.add_argument(
        "--sets",
        default="tuned,held out,held out 2",
        help="tuned, held out, held out 2, held out 3",
    )
    parser.add_argument(
        "--chunk-ms",
        default="20,40,100",
        help="audio fed this many ms at a time (the demo page sends 40 ms chunks, the official "
        "SDK 100 ms)",
    )
    args = parser.parse_args()
    for flag, values, kind, _ in COMPARED_SETTINGS:
        given = getattr(args, flag.removeprefix("--").replace("-", "_"))
        values[:] = [kind(value) for value in given.split(",") if value]
    SECOND_LOOKS[:] = [
        (int(pair.split(":")[0]), int(pair.split(":")[1]))
        for pair in args.second_looks.split(",")
        if pair
    ]
    pauses = [float(p) for p in args.pauses.split(",")]
    endpointing.SmartTurn().warm()
    recogniser = Recogniser()
    wanted = [w for w in args.modes.split(",") if w]
    sets = {
        "tuned": (ASKED, PAUSED),
        "held out": (ASKED_HELD_OUT, PAUSED_HELD_OUT),
        "held out 2": (ASKED_HELD_OUT_2, PAUSED_HELD_OUT_2),
        "held out 3": (ASKED_HELD_OUT_3, PAUSED_HELD_OUT_3),
    }
    results = {}
    for chunk_ms in [int(c) for c in args.chunk_ms.split(",")]:
        for name, settings in modes().items():
            if wanted and not any(w in name for w in wanted):
                continue
            for set_name in args.sets.split(","):
                row = f"{name} [{set_name}, {chunk_ms} ms chunks]"
                chunk = RATE * chunk_ms // 1000 * 2
                words = name != WITHOUT_WORDS
                results[row] = measure(
                    settings, pauses, recogniser, *sets[set_name], chunk, words=words
                )
                r = results[row]
                print(f"  {row}: {r['endpointing_cpu_p50_ms']:.0f} ms, {r['cut_off']} cut off")
    load = os.getloadavg()
    model_ms = [1000 * wall for _, wall, _ in _answers.values()]
    model_cpu_ms = [1000 * cpu for _, _, cpu in _answers.values()]
    rows = [
        [
            name,
            f"{r['cut_off']}/{r['paused_cases']}",
            f"{r['finished_sentences_cut']}/{r['questions']}",
            r["endpointing_cpu_p50_ms"],
            r["endpointing_cpu_p95_ms"],
            r["endpointing_p50_ms"],
            r["endpointing_p95_ms"],
            f"{r['ended_by_the_model']}/{r['questions']}",
        ]
        for name, r in results.items()
    ]
    print_table(
        f"Endpointing (synthetic Piper speech; finished questions / sentences with a pause, "
        f"tuned {len(ASKED)}/{len(PAUSED)}, held out {len(ASKED_HELD_OUT)}/"
        f"{len(PAUSED_HELD_OUT)}, held out 2 {len(ASKED_HELD_OUT_2)}/{len(PAUSED_HELD_OUT_2)}, "
        f"held out 3 {len(ASKED_HELD_OUT_3)}/{len(PAUSED_HELD_OUT_3)}; "
        f"pauses {args.pauses} s; load average "
        f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f})",
        [
            "mode",
            "cut off mid-sentence",
            "finished ones cut",
            "p50 ms (model CPU)",
            "p95",
            "p50 ms (model wall)",
            "p95",
            "ended by the model",
        ],
        rows,
    )
    if model_ms:
        print(
            f"\n  Smart Turn v3.2, one thread: {len(model_ms)} answers, CPU p50 "
            f"{statistics.median(model_cpu_ms):.0f} ms, p95 {p95(model_cpu_ms):.0f} ms; wall "
            f"p50 {statistics.median(model_ms):.0f} ms, p95 {p95(model_ms):.0f} ms (contention)"
        )
    for name, r in results.items():
        for text, *pause, looks in r["cut_off_cases"] + r["finished_sentences_cut_cases"]:
            print(f"  cut by {name!r}: {text!r} {pause}")
            for look in looks:
                print(f"      {look}")
    save(
        "endpointing",
        {
            "note": "synthetic Piper speech; endpointing counts the model's own time (CPU, and "
            "wall clock under contention); ran on a shared 2-core machine",
            "load_average": load,
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
