"""Whether the user has finished their turn, judged from the sound of it: Smart Turn v3.2.

A fixed silence timer must wait long enough not to cut people off when they pause mid-sentence
("I would like to book a table for, four people"), so it waits on everyone (400 ms). Smart
Turn is an audio model (a Whisper-tiny encoder, int8 ONNX, ~8 MB) trained on where people stop
and where they merely pause: the intonation and rhythm of the last words, not the words. Asked
at the first short silence, it lets a finished question end at once and a hesitation go on.

Why this model: it is the only turn-end model found whose weights ship inside a PyPI package
(no hub download at run time is possible here). LiveKit's turn detector
(livekit-plugins-turn-detector, a text model) and the Smart Turn wrappers smart-turn-livekit /
vox-smart-turn fetch their weights from a model hub at run time and pull in transformers or
huggingface-hub. Being audio-native, it needs no transcript, so it runs beside the recogniser.

The model ships inside the `pipecat-ai` wheel (`smart-turn-v3.2-cpu.onnx`) together with its
feature extraction (`_whisper_features.py`, numpy only). pipecat-ai pins ~25 packages we do not
use (pydantic, aiohttp, openai, numba, protobuf < 7 which onnxruntime 1.32's protobuf 7
contradicts), so it is installed with `--no-deps` (./dev does; pyproject.toml lists it under
`[tool.layercode-py] install-without-dependencies`). We import nothing of `pipecat` as a
package: its `__init__` logs a banner through loguru and, on Python < 3.12, replaces
`asyncio.wait_for` for the whole process. The two files are found through the distribution's
file list and the feature module is loaded from its path; it needs only numpy, the model only
onnxruntime, both pinned already.

Measured (bench/endpointing.py; synthetic Piper speech: 52 finished questions, and 24 sentences
with a 300/450/600 ms hesitation inside): the 400 ms timer cuts 48 of the 72 hesitations; the
model, asked at 160 ms, cuts 24 at a 0.5 threshold, 18 at 0.8, 9 at 0.9. It costs ~65-90 ms
of CPU per answer on one thread (features ~10 ms); when it does not answer "finished" the turn
ends after 1 s of silence. Asked alone at 100 ms it cut twice as many hesitations.

A second look at 450 ms (turns.py) ends the questions the model doubts at first ("Thank you
very much.") before the 1 s fallback. Alone, the model cannot tell a hesitation whose voice
falls from an end: "Please remind me to call," scores 0.98. The words can: a "finished" now
stands only if the recogniser's words of all the audio so far can end a sentence
(sentence_end.py). With them the first look moved to 96 ms at a 0.95 threshold (0.9 at the
second). bench/endpointing.py, 2026-11-30, load average 15-20 during the run (figures with the
model's CPU time; its wall time under that load was several times more): cut-offs of the 72
hesitations / p50 endpointing — timer 400 ms 48 / 428 ms; the model alone at 160 ms 15 / 241
ms; the previous default (plus an open-word list at the second look, on the lagging interim)
15 / 242 ms; asked at 96 ms > 0.95 and at 450 ms > 0.9 without words 19 / 184 ms; with the
words (the default) 3 / 188 ms (p95 599 ms). The three left: "near" misheard as "so more
there" (0.115) at the second look, and "Set a timer for, twenty five minutes." ended inside the
closure of "minutes" (words "twenty five men") after the 450/600 ms hesitation, its "-utes" a
turn of its own. The model costs ~65 ms of CPU per answer (p95 ~90 ms).

Later the same day the bench printed each cut's decision inputs (turns.py keeps them per
look) and measured held-out sentences beside the tuned ones (24 finished, 24 with a pause;
written after the thresholds were chosen). The stop of "min-utes" ended turns at 96 ms in
held-out sentences too ("call me back in ten men", model 0.97, P(end) 0.135); so did the
comma of "Yes," and "Goodbye," once clear words lowered the voice's bar. Now a look waits for
Silero to hear silence, after a number the first look wants P(end) >= 0.2, and words that
clear let a voice above 0.6 end the turn from three words on (turns.py). Load average 6-20:
cut-offs / finished sentences cut / p50 / p95 endpointing (model CPU) — tuned, before 3/72,
0/52, 186 ms, 567 ms; now 1/72, 0/52, 177 ms, 567 ms. Held out, before 4/72, 2/24, 199 ms,
1040 ms; now 2/72, 1/24, 200 ms, 1040 ms (the p95 is the 1 s fallback: "Set an alarm for
seven." and "I need a table for two." have words the model doubts end, P 0.04 and 0.02).
"Thank you very much." ends at the first look (172 ms, was 544). Left: a misheard word that
can end a sentence at the second look ("so more there", "the train leaves it": at 450 ms the
model is above 0.9 on nearly everything, so the words alone decide), "fifteen min" (P 0.22),
and "That sounds great," (model 0.99, P 0.43), which is a whole sentence.

Then (turns.py, 2026-11-30, each rule behind TURN_END_RULES_OFF): a "finished" waits for a
second frame Silero hears as silent ("fifteen min|utes": the voice is back by the next frame),
and weak words at the second look (P < 0.2) end the turn at 700 ms, not 450 ("so more there"
P 0.115, "the train leaves it" 0.078); the words are asked beside the model. The bench now
also feeds 100 ms chunks, as the page sends them, and counts the model as running while later
audio arrives. Load average 4-12; cut-offs, finished ones cut, p50 / p95 endpointing (model
CPU), previous -> now. Tuned, 20 ms chunks: 1/72 -> 0/72, 0/52 both, 180 -> 180 ms, p95 559
-> 708 ms; 100 ms chunks: 1/72 -> 0/72, 0/52 both, 225 -> 225 ms, p95 610 -> 748 ms. Held
out (its cuts were read to choose these rules: no longer held out), 20 ms: 2/72 -> 0/72, 1/24
both ("That sounds great,"), 176 ms both, p95 1040 ms both; 100 ms: 2/72 -> 0/72, 224 -> 228
ms, p95 1100 ms both. A second held-out set, written before the rules and never used to choose
them (tests/support/sentences.py: 10 finished, 12 with a pause of 300/450/600 ms): 20 ms
chunks 3/36 cut before and after, all "Please wake me up at, six fifteen" (the recogniser had
not heard "at": "please wake me up", P 0.21, the voice 0.69, a whole clause), and 1/10
finished ones cut, "Thanks, that is all for now." ended at "Thanks" (model 0.95, P 0.28); 100
ms chunks 0/36 before and after (by the chunk's end the recogniser had heard more), 1/10. The
p95 is the cost of the 700 ms wait: questions whose words end weakly ("send a message to my
mother", P 0.094) end at 700 ms instead of 480 ms. A third held-out set (6 finished, 12 with a
pause), written before the second's cuts were read: 0/36 cut and 0/6 finished ones cut, before
and after, at 20 and 100 ms chunks (p50 182 / 244 ms both; load 1-3).

Then why turns in the browser miss the first look (bench/latency.py now prints every look of
such a turn; 2026-11-30, the MicroPython page at 40 ms chunks, load 0.3-14): each time "What
time is it?", the model 0.945 at 96 ms (just under 0.95; over it 3 times in 4, by where the
32 ms frames fall on the voice's end), its words whole ("what time is it") but ending a
sentence weakly (P(end) 0.115 < 0.2: no lower bar), so it waited for the 480 ms look, whose
weak words hold a turn to 700 ms: endpointing 730-860 ms. Not the chunk alignment of the look
(the model hears the same frames at any chunk length), nor missing words. So the model is
asked once more between, at 256 ms (the middle look, turns.py), with the first look's bar
without the clear words' discount and not on one or two words ("No, thank you." at its comma:
"nope", 0.966 at 256 ms). What does depend on the chunk is the words at 96 ms: they cover
the audio to the end of the chunk that brought the look, and at 40 ms held-out 2's "Please
wake me up at," was heard "please wake me up" (P(end) 0.21, clear; the voice 0.69, over the
discount's 0.6) and cut. Now a finish on that discount waits for the words asked again at
192 ms (`clear-words-confirm`). bench/endpointing.py, load 8-17 (model CPU): cut-offs,
finished ones cut, p50 / p95, previous (both rules off) -> now. 40 ms chunks: tuned 0/72 ->
0/72, 0/52 both, p50 176 -> 173 ms, p95 728 both; held out 0/72 both, 1/24 both ("That sounds
great,"), 183 -> 171 ms; held out 2 3/36 -> 0/36, 1/10 both ("Thanks,"), 187 -> 192 ms; held
out 3 0/36 both, 0/6 both, 164 -> 175 ms. 100 ms chunks, now: 0/72, 0/72, 0/36, 0/36; p50
224, 234, 272, 257 ms (before: 225-244 ms on the tuned and third sets, load 1-12).

That confirm cost every turn ending on clear words the wait to 192 ms (the veto's words-again
silence), yet the word the look's chunk lacked comes with the next frame: "please wake me up
at" by 128 ms. So the confirm has its own silence (`clear_words_confirm_ms`,
TURN_END_CLEAR_WORDS_CONFIRM_MS), 128 ms; vetoing words are still asked again at 192 ms.
bench/endpointing.py --clear-confirms 128,160,192 (2026-11-30, 40 ms chunks, load 2.2-5.1;
cut-offs, p50 model CPU): tuned 0/72 all, 166 / 173 / 175 ms; held out 0/72 all, 181 / 184 /
187 ms; held out 2 0/36 all, 169 / 192 / 192 ms; held out 3 0/36 all, 160 / 173 / 173 ms. The
finished ones cut (held out "That sounds great,", held out 2 "Thanks,") are the model's own
(0.988, 0.954 at 96 ms: over the full threshold), the same at every value. At 128 ms, 20 and
100 ms chunks (load 1.6-3.0): 0/72, 0/72, 0/36, 0/36 cut both; p50 154, 159, 158, 171 ms and
219, 229, 272, 252 ms.

Then the browser's p95 (bench/latency.py, the quiet run at 128 ms): "Thank you very much." at
the 480 ms look, the voice 0.539 at 96 ms (under the 0.6 clear words need) and 0.845 at 256
ms (the middle look: no discount). So clear words lower the middle look's bar too, to 0.8
(`middle-clear-words`, TURN_END_MIDDLE_CLEAR_WORDS_MIN). bench/endpointing.py
--middle-clear-words 0.7,0.75,0.8,0.85 (2026-12-01, 40 ms chunks, load 2.5-9.0; cut-offs,
finished ones cut, p50 / p95 model CPU), rule off -> every bar but 0.7: tuned 0/72, 0/52, 166 /
728 ms; held out 0/72, 1/24, 167 / 1056; held out 2 0/36, 1/10, 166 / 1032; held out 3 0/36,
0/6, 166 / 1040 ms, the same with the rule on: no question of the sets reaches the middle
look with clear words and a voice of 0.8-0.95. At 0.7 the tuned set's "I would like to order
two, large pizzas" is cut at its comma in all three pauses (heard "i would like to war two",
P(end) 0.229, the voice 0.720 at 256 ms): the highest voice with clear words at a pause's
middle look on any set, so 0.8 keeps a margin.

And the 1 s fallback's turns: words that veto an end (P(end) < 0.075) held the turn to it
whatever the model said, misheard ones too ("Hello, how are you?" heard "oh pa or you" in the
browser, the model 0.98 at every look; on the sets "set an alarm for seven" P 0.040, "i needed
table for two" 0.022, the model 0.95-0.99 at 480 ms). The model cannot tell these from a
hesitation: at a pause's 480 ms look "a table for", "please reply me to call", "can you or
some" score 0.96-0.99 too. So only the wait can: at the second look a voice over 0.95 whose
words veto ends the turn at 800 ms of silence (`vetoed-words-wait`), longer than the weak
words' 700 ms, which outlasts every pause of the sets (300-600 ms). A hesitation of 0.8-1 s
after such words is cut now where the fallback waited.
bench/endpointing.py --vetoed-waits 800 against the run above (40 ms chunks, load 5.3-7.9):
0/72, 0/72, 0/36, 0/36 cut, the finished ones cut the same (held out "That sounds great,",
held out 2 "Thanks,"); the turns that waited for the fallback and whose voice was over 0.95
at 480 ms now end at 800-832 ms ("How much does it cost?", "Set an alarm for seven.", "I need
a table for two.", "My room number is four one two.", "Which platform does the train leave
from?", "Please close the garage door."; 1032-1056 before), held out's p95 1056 -> 816 ms;
the tuned set's p95 stays the weak words' 728 ms, held out 2's and 3's the fallback's (the
voice under 0.95 at 480 ms: "What does this word mean?" 0.661, "How much is the parking per
hour?" 0.072). The p50s moved by the model's own time, measured under that load (its CPU
p50 46 -> 50 ms, some answers 300 ms): no turn that ended before the 480 ms look changed.
Both rules on, at 20 and 100 ms chunks (load 4.8-6.2): 0/72, 0/72, 0/36, 0/36 cut at both,
the same finished ones cut; p50 / p95 159 / 708, 158 / 816, 166 / 1032, 158 / 1040 ms at 20
ms and 223 / 748, 234 / 836, 272 / 1072, 253 / 1080 ms at 100 ms (held out's p95 is the
vetoed words' 800 ms now; the other sets' p95 as above).

On a 2-core AMD EPYC without AVX-512 or VNNI (2026-12-01; the figures above came from a faster
machine, where a look cost ~56 ms) a look costs ~75 ms of CPU here, ~110 ms p50 of wall time in
the browser bench. Profiled (one thread; medians, load 3-5): the features ~6 ms with numpy's
OpenBLAS on one thread (24-36 ms when it may spread over both cores under load: the mel
projection is a matmul of transposed views, and OpenBLAS's helper threads wait on busy cores;
server/__init__.py sets OPENBLAS_NUM_THREADS=1 for that), onnxruntime ~70 ms: its QDQ graph
fused into QLinearMatMul (34 nodes, ~50 ms), QLinearSoftmax (4, ~15 ms) and float glue (~25
ms). None of onnxruntime's options moved it: ORT_ENABLE_EXTENDED instead of ALL, denormals as
zero, QDQ clean-up, the GELU approximation gave 69.2-69.9 ms against 69.8, the same scores;
two intra-op threads were slower with the machine shared (108-129 ms wall against 83 at load
4.9). No float model is shipped (the wheel's data/ holds only this int8 one), and the graph
run as floats (the QDQ pairs left unfused: ORT_ENABLE_BASIC) costs ~180-200 ms: MatMul alone
~112 ms where QLinearMatMul takes ~50, so the int8 kernels win even without VNNI. A shorter
window is not possible: the input is fixed at [batch, 80, 800] (8 s). Mel frames computed as
the audio arrives would save at most the features' 6 ms, and the frame grid moves with every
512-sample frame (the window is padded in front; 512 is not a multiple of the 160-sample hop).

So the look's cost stays; what can move is when it starts. With `look_ahead_ms` (turns.py,
TURN_END_LOOK_AHEAD_MS) the first look is asked before its 96 ms of silence, on the audio then,
and its "finished" ends the turn no earlier than 96 ms; its words are still asked at 96 ms
(asked at 64 ms the stop inside "min-utes" was heard "fifteen min", P(end) 0.22, and cut "Set a
timer for, fifteen minutes."; at 96 ms "fifteen minute", 0.14). A look still waits for Silero
to hear silence, which it mostly does only from 96 ms: of the 92 questions 15 had their look
moved (to 64 ms), no further with 64 ms ahead (Silero heard silence 32 ms after no question's
end; it did inside some pauses, where those looks scored low). bench/endpointing.py
--look-aheads 0,32,64 (40 ms chunks, load 1.7-2.6; cut-offs, finished ones cut, p50 model CPU):
this machine's baseline already differs from the figures above (the cause, found later: without
VNNI onnxruntime's fast int8 kernels saturate, `_session` below; TURN_END_MODEL_EXACT=auto now
sums exactly there): 0 ms ahead 6/72, 3/72, 0/36, 0/36 cut, 1/52,
1/24, 1/10, 0/6 finished ones cut ("Yes,", "That sounds great,", "Thanks,"), p50 204, 239, 208,
211 ms on the tuned, held out, held out 2 and 3 sets; 32 ms ahead the same counts, p50 201,
223, 205, 211 ms; 64 ms ahead the same as 32. On the tuned set the cuts swap: "My name is John
and," (the model 0.720 at 96 ms, 0.136 at 64; words heard again at 192 ms "my name is john
man", P(end) 0.224) is no longer cut, "I need a taxi at," is (the model 0.957 at 64 ms, 0.860
at 96; words "i needed taxi", P(end) 0.144): where the voice's end is scored moves the answers
near the thresholds both ways; "The package was supposed to arrive on," is cut in both (0.952
at 96 ms, "ride won"). Per question, 32 ms ahead against none: 7 ended sooner ("What is the
date today?" 354 -> 176 ms: 0.965 at 64 ms, short of the bar at 96; "Where can I park my car?"
358 -> 154), one later ("Remind me to buy milk on the way home." 186 -> 349 ms). In the browser
(bench/latency.py --browser-turns 6, the modes interleaved 0,32,64,0,32,64, 12 turns a mode,
load 1.3-2.3): endpointing p50 / p95 228 / 349, 221 / 512, 215 / 386 ms, voice-to-voice 388 /
497, 381 / 627, 358 / 568 ms, the model's answer 98, 90, 87 ms p50; only 3 of 24 turns ahead
had their look at 64 ms, so these differences are within the run's noise (the p95 of 32 ms
ahead is one turn whose words came 419 ms after they were asked). 64 moved no question's look
further and, inside pauses, put looks at 32 ms whose low scores skip the 96 ms look. 0 is the
default (TURN_END_LOOK_AHEAD_MS): after the merge, on a quiet machine, 32 ms ahead gave no
better latency in the browser (voice-to-voice p50 / p95 351 / 525 against 348 / 481 ms, 24
turns a mode) and a worse ten-talker p95 in `./dev bench load` (1585 against 1228 ms).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import logging
import threading
from pathlib import Path

import numpy as np

RATE = 16000
WINDOW_S = 8  # the model hears the last 8 s, zero-padded in front when shorter
DISTRIBUTION = "pipecat-ai"
MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
FEATURES_FILE = "_whisper_features.py"
EXACT_MODES = ("auto", "true", "false")  # TURN_END_MODEL_EXACT (`_session`)
log = logging.getLogger("server.pipeline")


class ModelUnavailable(RuntimeError):
    """The turn-end model's package is not installed (./dev installs it)."""


def packaged_file(name: str, under: str = "smart_turn") -> Path:
    """A file shipped in the pipecat-ai wheel, found without importing `pipecat`."""
    try:
        files = importlib.metadata.distribution(DISTRIBUTION).files or []
    except importlib.metadata.PackageNotFoundError as error:
        raise ModelUnavailable(
            f"the turn-end model needs the {DISTRIBUTION} package: "
            f"pip install --no-deps {DISTRIBUTION} (./dev installs it)"
        ) from error
    for file in files:
        if file.name == name and under in file.parts:
            return Path(str(file.locate()))
    raise ModelUnavailable(f"{DISTRIBUTION} has no {name}")


@functools.cache
def _features():
    """Smart Turn's own Whisper log-mel extraction, loaded from its file (see module doc)."""
    path = packaged_file(FEATURES_FILE)
    spec = importlib.util.spec_from_file_location("smart_turn_whisper_features", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.compute_whisper_log_mel_features


def _new_session(threads: int, exact: bool):
    """An onnxruntime session of the model; `exact`: int8 products summed without saturating."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if exact:
        options.add_session_config_entry("session.x64quantprecision", "1")
    return ort.InferenceSession(str(packaged_file(MODEL_FILE)), sess_options=options)


def input_features(pcm: bytes) -> np.ndarray:
    """The model's input for a turn's audio (16 kHz PCM16 mono): its last `WINDOW_S`, padded
    in front with silence, as Whisper log-mel features."""
    usable = len(pcm) - len(pcm) % 2
    samples = np.frombuffer(pcm[:usable], dtype="<i2")[-WINDOW_S * RATE :]
    audio = samples.astype(np.float32) / 32768.0
    audio = np.pad(audio, (WINDOW_S * RATE - audio.size, 0))
    return _features()(audio, do_normalize=True)[None]


def probe_features() -> np.ndarray:
    """The model's input for 1.5 s of a synthetic voice (a gliding 130 Hz pitch with 29
    harmonics, syllable-like swells) and a 96 ms pause: enough like speech for the int8
    kernels that saturate to answer differently (0.040 against 0.127 under an emulated
    Haswell, where random input gives the same answer both ways)."""
    t = np.arange(int(1.5 * RATE)) / RATE
    pitch = 130 + 30 * np.sin(2 * np.pi * 1.3 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 30))
    voice *= (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) ** 2 * 0.3
    audio = np.concatenate([voice, np.zeros(int(0.096 * RATE))]).astype(np.float32)
    audio = np.pad(audio, (WINDOW_S * RATE - audio.size, 0))
    return _features()(audio, do_normalize=True)[None].astype(np.float32)


@functools.cache
def _session(threads: int, exact: str):
    """One ONNX session per process and setting, shared by every caller (`run` is
    thread-safe), and whether it sums exactly: (session, exact).

    The model is int8. On x86 CPUs without VNNI (AVX2 alone: AMD Zen 2/3, Intel before Ice
    Lake servers) onnxruntime's fast int8 kernels add pairs of products in 16 bits, which
    saturate: the same audio then scores differently, not by a rounding but by up to 0.94
    ("I would like to speak to," at its pause: 0.033 on a VNNI CPU, 0.973 on Haswell, emulated
    by qemu; 14 of 24 paused sentences and 9 of 36 finished questions changed side of 0.5 or
    0.95). `session.x64quantprecision` makes it sum in 32 bits, as VNNI does: then the scores
    were those of the VNNI CPU exactly, in all 20 compared. It costs ~45 % more on a VNNI CPU
    (81 against 56 ms of CPU a look), so `auto` asks both sessions about `probe_features()`
    at load and keeps the fast one where their answers agree (TURN_END_MODEL_EXACT).
    On a real CPU without VNNI (a 2-core AMD EPYC with AVX2 alone, 2026-12-02,
    bench/model_exact.py, load 1): of 124 looks (52 questions at 96 ms, 24 paused sentences at
    96, 256 and 450 ms) the fast kernels put 20 on the other side of 0.5 and 20 of 0.95 (6 of
    them a pause the fast kernels called finished), the largest difference 0.83 ("My name is
    John and," at 450 ms: 0.869 fast, 0.037 exact); the probe scored 0.040 / 0.127 as under
    qemu, and exact sums cost 1.16x the CPU a look (p50 88.6 against 76.3 ms)."""
    if exact == "false":
        return _new_session(threads, exact=False), False
    exact_session = _new_session(threads, exact=True)
    if exact == "true":
        return exact_session, True
    fast = _new_session(threads, exact=False)
    probe = {"input_features": probe_features()}
    if fast.run(None, probe)[0].tolist() == exact_session.run(None, probe)[0].tolist():
        return fast, False
    log.info("turn-end model: exact int8 arithmetic (this CPU's fast int8 kernels saturate)")
    return exact_session, True


class SmartTurn:
    """`probability(pcm)`: how sure the model is that the turn in `pcm` is complete (0..1).

    `pcm` is the user's turn so far, 16 kHz PCM16 mono, ending at the silence; only its last
    8 s are heard. Safe to call from several threads; onnxruntime releases the GIL meanwhile.
    """

    def __init__(self, threshold: float = 0.5, threads: int = 1, exact: str = "auto"):
        if exact not in EXACT_MODES:
            raise ValueError(f"exact must be one of {', '.join(EXACT_MODES)}")
        self.threshold = threshold
        self._threads = threads
        self._exact = exact  # TURN_END_MODEL_EXACT: auto, true, false (`_session`)

    # One for every instance: the first loads build `_session`'s sessions once, not per thread.
    _lock = threading.Lock()

    def warm(self) -> None:
        """Load the model and the features (~0.1 s, ~0.2 s with `auto`'s probe) so the first
        pause does not pay for it."""
        with self._lock:
            _features()
            _session(self._threads, self._exact)

    def probability(self, pcm: bytes) -> float:
        self.warm()
        features = input_features(pcm)
        session, _ = _session(self._threads, self._exact)
        (logits,) = session.run(None, {"input_features": features})
        return float(np.asarray(logits).reshape(-1)[0])  # already a sigmoid probability

    def is_complete(self, pcm: bytes) -> bool:
        return self.probability(pcm) > self.threshold
