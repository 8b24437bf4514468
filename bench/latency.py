"""Voice-to-voice latency of the embedded pipeline: end of the user's speech → first agent audio.

A Python client streams real speech (made with Piper) in real time, in 100 ms chunks as a
microphone does, over a real WebSocket, and times the first `response.audio` of each answer
from the moment the speech in its input ended. The server's own per-turn split (endpointing
wait, final transcript, webhook first event, first TTS chunk) comes with each `response.end`.

Side by side in the same run: the Piper voice (the default) with speculative answers (the
default for the demo agent: the agent is asked and the first sentence made at the first pause,
speculation.py) and without them (`SPECULATIVE_ANSWERS=off`, the previous behaviour), and
espeak-ng (the light engine), against the goals: voice-to-voice p50 ≤ 450 ms and p95 ≤ 550 ms
(played in the browser), endpointing p50 ≤ 220 ms. `speculated` counts the answers that went
out speculatively. Each browser mode (`--browser-modes`, SPECULATIVE_ANSWERS values) is a
column.

Then (b), played in the browser: the demo page in Chromium with the questions as its fake
microphone. The server reports, on each `response.end`, when the user's voice stopped
(`speech_end_epoch_ms`, wall clock); the page records when the client handed the turn's first
audio to the player worklet (`Date.now()`), to which the AudioContext's own reported output
latency is added. Same machine, same clock. Each browser mode is a SPECULATIVE_ANSWERS value,
optionally with the turn-end rules turned off (TURN_END_RULES_OFF; `auto:previous` is the
decision before 2026-11-30's rules), and optionally `@` and the page's microphone chunk length
(`?chunk_ms=`: `auto@100` is 100 ms chunks, the default before 40 ms and the official SDK's:
a longer wait for the chunk that carries the look's silence),
side by side in the same run. The endpointing wait is split
at the look that ended the turn (turns.py logs each look with its timestamps): `to_look_ms`
from the end of the voice to the look (the silence it waits for, `look_silence_ms` of stream,
plus the wait for the audio chunk that brings it), then from the look: the model's answer
(`model_ms`), the recogniser's words (`words_ms`), and the verdict to the turn's end
(`verdict_to_end_ms`: a held finished, the event loop). A turn that did not end at its first
look has every look printed below it (the model's answer, the words, P(end), the silence):
that is how the middle look and `clear-words-confirm` (turns.py) were found. A mode named
more than once is run that many times and its turns pooled: on a machine whose load drifts,
interleave the modes (`--browser-modes A,B,A,B --browser-turns 10`) so that neither gets the
quiet half.

    python bench/latency.py [--turns 20] [--engines piper,piper:off,espeak] [--browser-turns 20]
                            [--browser-modes auto,auto:middle-look+clear-words-confirm,auto@100]

(`engine:off` runs the engine with SPECULATIVE_ANSWERS=off; `engine@40` streams 40 ms chunks,
the demo page's default on MicroPython, instead of the official SDK's 100; `--engines ""` the
browser alone. The Python client's modes split the endpointing at its look too: with no browser
on the machine, that is the server's own endpointing as a deployment has it, the browser
elsewhere.)

Run of 2026-11-30 after the microphone's chunks were framed in the worklet (12 turns a mode,
load average 5-10 on the shared 2-core machine, so every stage is slow: Piper's first audio
284 ms, the model 142 ms): the MicroPython page at its default 40 ms chunks (`auto`) against
100 ms (`auto@100`), voice-to-voice p50 / p95 748 / 1256 ms against 930 / 1293, endpointing p50
278 against 460 ms, the end of the voice to the look 110 against 160 ms (p50).

Runs of 2026-11-30 with the middle look and `clear-words-confirm` (turns.py) against the
decision before them (`auto:middle-look+clear-words-confirm`), the MicroPython page at 40 ms
chunks, the modes interleaved A,B,A,B, 10 turns a slot (20 a mode), voice-to-voice p50 / p95,
endpointing p50 / p95, previous -> now. Quiet (load 1.1-3.0): 469 / 762 -> 466 / 1060 ms,
192 / 669 -> 226 / 722 ms. Both p95s are "Hello, how are you?" heard "oh pa or you" (P(end)
0.017: every look vetoed, the 1 s fallback; once in each mode) and a second slow turn: before,
"Thank you very much." at the 480 ms look (the voice 0.54-0.56 at 96 ms, twice); now one turn
whose first look ended it yet whose end came at 722 ms (the page's audio late), and "Thank
you very much." confirmed by the words at 192-320 ms (237-457 ms; before, 175-190 ms when the
voice was over 0.6, else 558-669). The middle look ended "What time is it?" at 256 ms (364
ms; before it waited for 480 and 700 ms). Under load (2-10, same interleaving): 917 / 1700 ->
458 / 580 ms, 327 / 1045 -> 198 / 360 ms (the previous mode had the loaded slot).
The quiet run after the merge, with the clear-words confirm at 128 ms (load 0.81, 12 turns a
slot, 24 a mode): 414 / 818 -> 405 / 599 ms, 183 / 730 -> 185 / 373 ms. Two turns of 24 still
went to the 480 ms look, both "Thank you very much." (the voice 0.539 at 96 ms, under the 0.6
clear words need; 0.845 at the middle look, which gives clear words no discount).
Then `middle-clear-words` (clear words lower the middle look's bar to 0.8) and
`vetoed-words-wait` (at the second look, vetoing words hold a voice the model is sure of only
to 800 ms), against both off (`auto:middle-clear-words+vetoed-words-wait`), interleaved A,B,A,B,
12 turns a slot, 24 a mode, under load (4.2-11: other work on the machine), voice-to-voice
played p50 / p95, endpointing p50 / p95, both off -> on: 571 / 1146 -> 590 / 1246 ms, 239 /
1033 -> 222 / 817 ms. "Hello, how are you?" was heard "oh pa or you" (P(end) 0.017, the model
0.98 at every look) in all four slots: 1033 and 1057 ms of endpointing with the rules off, 817
and 825 with them on (held to 800 ms). "Thank you very much." scored 0.366-0.893 at 96 ms; at
0.559 it ended at the middle look (0.845) with the rule on, at 0.366 it still went to the 480
ms look (0.661 at the middle look). A second run (load 4.9-11.4): 669 / 1292 -> 683 / 2003 ms,
248 / 1041 -> 261 / 1035 ms; its second B slot ran at load 11 (the model's answers 400-650 ms,
a look's words up to 1 s late: endpointing 528 / 1035 ms in that slot, 197 / 261 in the other
B slot). There "Thank you very much." scored 0.882 at the middle look in both modes: it ended
there with the rule, went to the 480 ms look without it. Both runs, the voice-to-voice tails
of both modes are the load's (the recogniser's words and Piper 300-840 ms late), not the turn
end's: these runs cannot show the p95 goal met or missed; a quiet run can.
The quiet run after the merge (2026-12-01, the machine alone, load 1.06, 12 turns a slot, 24
a mode, both off -> on): voice-to-voice 391 / 1108 -> 350 / 489 ms, endpointing 179 / 1057 ->
180 / 335 ms. "Hello, how are you?" was misheard in three of the four slots: 1057 ms of
endpointing twice with the rules off, 826 ms once with them on (held to 800 ms), so the
on-mode's p95 holds while it is misheard at most once in 24 turns. `middle-clear-words` did
not fire: "Thank you very much." scored 0.73-0.89 at 96 ms in every on-slot and the confirm
ended it at 160 ms (off: once 0.366 at 96 ms, 0.661 at 256 ms, the 480 ms look). The
recogniser hears "oh how're you" even from the clean Piper audio on its own (bench/wer.py's
`decode`, 16 and 48 kHz): "hello" is lost before the browser, a task for the language model.
The quiet run after the next merge (2026-12-01, an AMD EPYC machine, load 1.2, 12 turns a
slot, 24 a mode, the previous configuration `auto#STT_PHRASES=none#TTS_FIRST_PHRASE_WORDS=0`
-> as configured): voice-to-voice 458 / 599 -> 389 / 525 ms, endpointing 220 / 389 -> 232 /
381 ms, first audio after the end 174 / 218 -> 112 / 144 ms (the first sentence's opening
phrase made alone: "You said:" first). No turn went to the fallback in either mode: "Hello,
how are you?" ended at its first look in all 48 turns, so the language model was not tested
by it here (the phrase model does not recover "hello" from Piper's voice: docs/scaling.md).
The turn-end model's look takes ~110 ms p50 on this machine, which keeps endpointing's p50
over 220 ms in both modes.
Then the first look asked ahead of its 96 ms (TURN_END_LOOK_AHEAD_MS, turns.py; 2026-12-01,
the same machine, load 1.3-2.3, `--browser-turns 6 --browser-modes` 0,32,64,0,32,64 as
`auto#TURN_END_LOOK_AHEAD_MS=N`, 12 turns a mode), 0 / 32 / 64 ms: voice-to-voice p50 / p95 388
/ 497, 381 / 627, 358 / 568 ms; endpointing 228 / 349, 221 / 512, 215 / 386 ms; the model's
answer p50 98, 90, 87 ms. Silero hears silence 64 ms after a question's end in few turns (3 of
24 ahead), so the p50s differ within the run's noise; the p95 at 32 is one turn whose words
came 419 ms after they were asked. The look's own cost (features ~6 ms, onnxruntime ~70 ms of
CPU here) is profiled in server/pipeline/endpointing.py: none of the options tried lowered it.
On a CPU without VNNI the model sums its int8 products exactly (TURN_END_MODEL_EXACT=auto
chooses it there: the fast kernels saturate and change its answers), at ~1.16x the CPU a look.
Whether that is what keeps the endpointing over 220 ms there: `--engines "" --browser-turns 10
--browser-modes auto,auto#TURN_END_MODEL_EXACT=false,auto,auto#TURN_END_MODEL_EXACT=false`
(2026-12-03, a 2-core AMD EPYC with AVX2 alone, load 0.9-1.1, 20 turns a mode), exact (as
configured) -> fast kernels: voice-to-voice played p50 / p95 439 / 568 -> 440 / 522 ms,
endpointing 256 / 409 -> 259 / 383 ms, the model's answer p50 138 -> 120 ms, the end of the
voice to the look 114 -> 122 ms. It is not: with the fast kernels too the first look's 96 ms of
silence, the chunk that brings it (~18 ms) and the model's answer (120-140 ms of wall time for
its ~90 ms of CPU here) come to ~250 ms.
Nor is it the browser sharing the server's two cores: the Python client instead, `--engines
piper@40,piper,piper@40,piper --turns 10 --browser-turns 0` (the same machine and hour, load
0.5-0.6, 20 turns a mode), 40 ms chunks / 100 ms chunks: voice-to-voice received p50 / p95 386 /
683 and 410 / 705 ms, endpointing 262 / 652 and 273 / 669 ms, the end of the voice to the look
p50 133 and 146 ms, the model's answer 122 and 112 ms. A turn that ends at its first look waits
96 ms of silence, ~35 ms more for Silero's 32 ms frames and the chunk that brings them, and the
model's ~110 ms: ~240 ms on this CPU, ~180 ms on the VNNI machines.

Before the measured runs, `--warm-up` turns (3) go through the first mode, untimed: the first
run in a process paid 20-60 ms more per turn than the same mode later (the models' first
inferences, the recogniser's and Chromium's caches), which favoured every mode but the first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from common import median, p95, print_table, save, serve

from server.app import create_app
from server.config import Settings
from server.pipeline.turns import Look
from tests.support.speech import silence, speak, voiced_span
from tests.support.voice_client import CHUNK_S, VoiceClient

QUESTIONS = [
    "What time is it?",
    "Hello, how are you?",
    "Can you help me?",
    "What is the date today?",
    "Thank you very much.",
]
START_TIMEOUT_S = 300  # loading the models takes minutes on a loaded machine
LEAD_S = 0.5
TAIL_S = 1.5
# The goals (p50 / p95) of the issue that brought the turn-end model and speculative answers.
TARGETS = {"voice_to_voice_ms": "≤ 450 / ≤ 550", "endpointing_ms": "≤ 220 / -"}
SPLIT = ("endpointing_ms", "transcript_ms", "webhook_ms", "tts_first_audio_ms", "after_endpoint_ms")
# The endpointing wait split at the look that ended the turn (browser modes; LookLog.split).
LOOK_SPLIT = ("to_look_ms", "look_silence_ms", "model_ms", "words_ms", "verdict_to_end_ms")


async def one_turn(client: VoiceClient, question: str, chunk_s: float) -> dict:
    speech = speak(question)
    pcm = silence(LEAD_S) + speech + silence(TAIL_S)
    mark = len(client.received)
    started = await client.stream(pcm, chunk_s=chunk_s)
    speech_end = started + LEAD_S + voiced_span(speech)[1]  # the last voiced 10 ms
    end = await client.wait_for("response.end", lambda m: m.get("timings"), after=mark)
    turn_id = end.message["turn_id"]
    first_audio = next(
        r
        for r in client.received[mark:]
        if r.type == "response.audio" and r.message["turn_id"] == turn_id
    )
    await client.send({"type": "trigger.response.audio.replay_finished"})
    heard = next(m["content"] for m in client.of_type("user.transcript", mark))
    return {
        "question": question,
        "heard": heard,
        "client_ms": round((first_audio.at - speech_end) * 1000, 1),
        **end.message["timings"],
    }


async def measure(url: str, turns: int, chunk_s: float, looks: LookLog) -> list[dict]:
    async with VoiceClient(url) as client:
        await client.connect()
        welcome = await client.wait_for("turn.start", lambda m: m["role"] == "assistant")
        await client.finish_playback(welcome.message["turn_id"])
        results = []
        for n in range(turns):
            turn = await one_turn(client, QUESTIONS[n % len(QUESTIONS)], chunk_s)
            results.append({**turn, **looks.split(turn)})
            last = results[-1]
            split = ", ".join(f"{name} {last.get(name) or 0:.0f}" for name in LOOK_SPLIT)
            print(f"  turn {n + 1:2d}: {last['client_ms']:6.0f} ms  {last['heard']!r} ({split})")
        return results


def configured(environment: dict[str, str] | None = None, **overrides) -> Settings:
    """The settings `./dev start` runs with (the environment's, with `environment` over it,
    over the defaults: the demo agent's phrase list for the recogniser among them), with a
    mode's `overrides`; the dataclass's own defaults leave out what `from_env` resolves
    (STT_PHRASES=auto)."""
    return replace(Settings.from_env({**os.environ, **(environment or {})}), **overrides)


def run_engine(mode: str, turns: int) -> list[dict]:
    """`mode`: the voice, then optionally `:` and the SPECULATIVE_ANSWERS value, then
    optionally `@` and the client's chunk length in ms (100 by default, as the official SDK)."""
    mode, _, chunk_ms = mode.partition("@")
    engine, _, speculative = mode.partition(":")
    chunk_s = int(chunk_ms) / 1000 if chunk_ms else CHUNK_S
    with tempfile.TemporaryDirectory() as data, looks_logged() as looks:
        settings = configured(
            tts_engine=engine, data_dir=Path(data), speculative_answers=speculative or "auto"
        )
        with serve(create_app(settings), start_timeout_s=START_TIMEOUT_S) as url:
            print(f"\n{mode}: {turns} turns streamed in real time, {chunk_s * 1000:.0f} ms chunks")
            return asyncio.run(measure(url, turns, chunk_s, looks))


PLAYBACK_PROBE = """
window.__firstPlay = {};
window.__contexts = [];
const Base = window.AudioContext;
window.AudioContext = class extends Base {
  constructor(...a) { super(...a); window.__contexts.push(this); }
};
const post = MessagePort.prototype.postMessage;
MessagePort.prototype.postMessage = function (data, ...rest) {
  if (data && data.type === "audio" && !(data.turnId in window.__firstPlay))
    window.__firstPlay[data.turnId] = Date.now();
  return post.call(this, data, ...rest);
};
"""


# A browser mode's turn-end rules off (TURN_END_RULES_OFF): "previous" is the decision before
# the rules of 2026-11-30 (the words asked after the model, a finished ending at the first
# frame Silero hears as silent, weak words at the 450 ms look ending the turn at once).
PREVIOUS_RULES = ("words-at-look", "vad-confirm", "weak-words-wait")


class LookLog(logging.Handler):
    """Every turn-end look the server's detectors decided (turns.py logs each at debug level
    with its timestamps): where the endpointing wait goes, matched to turns by time."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.looks: dict[int, Look] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.args and isinstance(record.args[0], Look):
            self.looks[id(record.args[0])] = record.args[0]

    def split(self, timings: dict) -> dict:
        """The endpointing wait of one turn, split at the look that ended it (wall clock ms):
        to the look (the silence the look waits for, and the audio chunk that brings it), the
        model's answer, the words, the verdict, and from the verdict to the turn's end (a
        held finished, the event loop)."""
        to_epoch = time.time() - time.monotonic()
        speech_end = timings["speech_end_epoch_ms"] / 1000
        endpoint = speech_end + timings.get("endpointing_ms", 0) / 1000
        ended = [
            look
            for look in self.looks.values()
            if look.finished and speech_end - 0.1 < look.asked_at + to_epoch <= endpoint
        ]
        turn_looks = [
            str(other)
            for other in sorted(self.looks.values(), key=lambda other: other.asked_at)
            if speech_end - 0.1 < other.asked_at + to_epoch <= endpoint
        ]
        if not ended:  # the fallback (or the client) ended it: its looks say why
            return {"looks": turn_looks}
        look = max(ended, key=lambda look: look.asked_at)
        asked = look.asked_at + to_epoch

        def since_asked(at):
            return round(1000 * (at - look.asked_at), 1) if at is not None else None

        return {
            "look_silence_ms": look.silence_ms,
            "to_look_ms": round(1000 * (asked - speech_end), 1),
            "model_ms": since_asked(look.answered_at),
            "words_ms": since_asked(look.words_at),
            "verdict_ms": since_asked(look.decided_at),
            "verdict_to_end_ms": round(1000 * (endpoint - asked), 1)
            - (since_asked(look.decided_at) or 0),
            "looks": turn_looks,
        }


@contextlib.contextmanager
def looks_logged():
    """A LookLog on the pipeline's logger (at debug level) while the block runs."""
    looks = LookLog()
    pipeline_log = logging.getLogger("server.pipeline")
    level = pipeline_log.level
    pipeline_log.setLevel(logging.DEBUG)
    pipeline_log.addHandler(looks)
    try:
        yield looks
    finally:
        pipeline_log.removeHandler(looks)
        pipeline_log.setLevel(level)


def browser_turns(turns: int, mode: str = "auto") -> list[dict]:
    """Voice-to-voice to the moment the page starts playing the answer. `mode`: the
    SPECULATIVE_ANSWERS value, then optionally `:` and the turn-end rules turned off
    (`+`-separated TURN_END_RULES_OFF names, or `previous`), then optionally `@` and the page's
    chunk length in ms (`?chunk_ms=`), then any number of `#NAME=VALUE` settings (README's
    table: `auto#STT_PHRASES=none`)."""
    from playwright.sync_api import sync_playwright

    from tests.conftest import chromium_launch_args
    from tests.support.speech import write_wav

    gap = silence(7.0)  # time for the answer to play out before the next question
    loop = b"".join(silence(0.5) + speak(q) + gap for q in QUESTIONS)
    ends: dict[str, dict] = {}

    def watch(ws):
        def frame(payload):
            message = json.loads(payload)
            if message.get("type") == "response.end" and (message.get("timings") or {}).get(
                "speech_end_epoch_ms"
            ):
                ends[message["turn_id"]] = message["timings"]

        ws.on("framereceived", frame)

    with contextlib.ExitStack() as stack:
        data = stack.enter_context(tempfile.TemporaryDirectory())
        playwright = stack.enter_context(sync_playwright())
        wav = write_wav(Path(data) / "questions.wav", loop, 16000)
        browser = playwright.chromium.launch(**chromium_launch_args(wav=wav))
        mode, *assigned = mode.split("#")
        environment = dict(pair.split("=", 1) for pair in assigned)
        mode, _, chunk_ms = mode.partition("@")
        speculative, _, off = mode.partition(":")
        off_rules = PREVIOUS_RULES if off == "previous" else tuple(n for n in off.split("+") if n)
        settings = configured(
            environment,
            data_dir=Path(data),
            speculative_answers=speculative,
            turn_end_rules_off=off_rules,
        )
        looks = stack.enter_context(looks_logged())
        with serve(create_app(settings), start_timeout_s=START_TIMEOUT_S) as url:
            page = browser.new_page()
            page.add_init_script(PLAYBACK_PROBE)
            page.on("websocket", watch)
            page.goto(url + (f"/?chunk_ms={int(chunk_ms)}" if chunk_ms else ""))
            page.wait_for_selector("body[data-state=ready]", state="attached", timeout=60_000)
            page.click("#connect")
            print(f"\nbrowser: {turns} turns through the demo page (about {turns * 9} s)")
            while len(ends) < turns:
                page.wait_for_timeout(500)
            page.wait_for_timeout(500)
            played = page.evaluate("window.__firstPlay")
            output_ms = page.evaluate(
                "Math.max(...window.__contexts.map(c => (c.baseLatency + (c.outputLatency || 0))"
                " * 1000))"
            )
        browser.close()
    results = []
    for turn_id, timings in ends.items():
        if turn_id in played:
            results.append(
                {
                    "browser_ms": round(
                        played[turn_id] + output_ms - timings["speech_end_epoch_ms"], 1
                    ),
                    "output_latency_ms": round(output_ms, 1),
                    **timings,
                    **looks.split(timings),
                }
            )
            r = results[-1]
            split = ", ".join(f"{name} {r.get(name) or 0:.0f}" for name in SPLIT[:4] + LOOK_SPLIT)
            print(f"  turn {len(results):2d}: {r['browser_ms']:6.0f} ms played ({split})")
            if len(r.get("looks", ())) > 1 or "to_look_ms" not in r:  # not at the first look
                for line in r["looks"]:
                    print(f"           {line}")
    return results


def summary(results: list[dict]) -> dict:
    key = "browser_ms" if results and "browser_ms" in results[0] else "client_ms"
    figures = {"voice_to_voice_ms": [r[key] for r in results]}
    for name in SPLIT + LOOK_SPLIT:
        figures[name] = [r[name] for r in results if r.get(name) is not None]
    out = {
        name: {"p50": median(v) if v else "-", "p95": p95(v) if v else "-"}
        for name, v in figures.items()
    }
    out["speculated"] = {"p50": sum("speculative_ms" in r for r in results), "p95": len(results)}
    return out


def warm_up(turns: int, engines: list[str], browser_modes: list[str]) -> None:
    """Untimed turns through the first mode, so the first measured mode pays no more than the
    others for what a process and a browser do once (their figures are thrown away)."""
    if turns <= 0:
        return
    print(f"\nwarm-up: {turns} untimed turns")
    if engines:
        run_engine(engines[0], turns)
    if browser_modes:
        browser_turns(turns, browser_modes[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--engines", default="piper,piper:off,espeak")
    parser.add_argument("--browser-turns", type=int, default=20)
    parser.add_argument(
        "--warm-up",
        type=int,
        default=3,
        help="untimed turns through the first mode before the measured ones (0: none)",
    )
    parser.add_argument(
        "--browser-modes",
        default="auto,auto:middle-look+clear-words-confirm,auto@100",
        help="SPECULATIVE_ANSWERS values, each optionally with ':' and the TURN_END_RULES_OFF "
        "names joined by '+' ('previous': the turn-end rules before 2026-11-30's), then optionally "
        "'@' and the page's chunk_ms, then '#NAME=VALUE' settings (e.g. 'auto#STT_PHRASES=none')",
    )
    args = parser.parse_args()

    engines = [engine for engine in args.engines.split(",") if engine]
    browser_modes = args.browser_modes.split(",") if args.browser_turns else []
    warm_up(args.warm_up, engines, browser_modes)
    runs: dict[str, list[dict]] = {}
    for engine in engines:  # an engine named twice is run twice, its turns pooled
        runs.setdefault(engine, []).extend(run_engine(engine, args.turns))
    for mode in browser_modes:  # a mode named twice is run twice, its turns pooled
        runs.setdefault(f"browser:{mode}", []).extend(browser_turns(args.browser_turns, mode))
    summaries = {engine: summary(results) for engine, results in runs.items()}
    rows = []
    for name in ("voice_to_voice_ms", *SPLIT, *LOOK_SPLIT, "speculated"):
        row = [name]
        for engine in runs:
            row += [summaries[engine][name]["p50"], summaries[engine][name]["p95"]]
        rows.append([*row, TARGETS.get(name, "")])
    header = ["ms"]
    for engine in runs:
        header += [f"{engine} p50", f"{engine} p95"]
    print_table(
        "Voice-to-voice: end of speech → first agent audio received (piper, espeak) or played "
        "(browser); `:off` = SPECULATIVE_ANSWERS=off (the previous behaviour); speculated = "
        "answers sent speculatively / turns",
        [*header, "goal p50 / p95"],
        rows,
    )
    save("latency", {"turns": args.turns, "summary": summaries, "turns_detail": runs})


if __name__ == "__main__":
    main()
