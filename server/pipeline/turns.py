"""Turn detection: where the user's speech starts and where their turn ends.

A voice activity detector classifies frames as voiced or not — Silero VAD (`vad="silero"`,
32 ms frames; vad.py says why) or webrtcvad (`vad="webrtc"`, 20 ms frames) — and a frame must
also be louder than an energy floor, so faint noise never opens a turn. A turn starts after
`start_ms` of mostly-voiced frames and ends after `end_silence_ms` without voice (the
endpointing wait, the largest part of voice-to-voice latency). The audio before the start is
kept as pre-roll so the recogniser hears the first syllable. Of a silence inside a turn the
recogniser is given at most `recognised_silence_ms` (300 ms) and, when the voice comes back,
the `onset_ms` before it: under load a turn ends 0.7-1 s into its silence, and the final
transcript waited for all of it to be decoded (docs/scaling.md).

With `end_model="smart-turn"` the turn-end model (endpointing.py) is asked at
`model_silence_ms` (96 ms) of silence whether the turn sounds finished, and, if it did not say
so, once more at `second_look_ms` (450 ms: "I would like to make an appointment with the
doctor." it doubts at first it is sure of by then). The first look may be asked `look_ahead_ms`
early (TURN_END_LOOK_AHEAD_MS, 0 = off in the server), on the audio then, so the model's ~75-110
ms of work runs while the rest of the 96 ms arrives; its "finished" still ends the turn no
earlier than 96 ms, and its words are asked at 96 ms. With Silero, a look also waits until
Silero itself hears silence, not only the energy floor: the stop inside "min-utes" is ~100 ms under
the floor while Silero, which follows the stream, still hears speech (0.57-0.83 where most
sentence ends score 0.02-0.49 by then). A "finished" needs the look's threshold
(`model_threshold` 0.95 at the first, `second_threshold` 0.9 at the second) and, with
`text_veto`, words that can end a sentence: the detector asks for them (`WordsWanted`: with
the look, so the recogniser's answer and the model's are computed side by side, or with
`words_at_look` off only once the model heard an end), the session answers with the
recogniser's hypothesis of all the audio so far (`hint`; not the periodic interim, which lags
the voice by a word), and the turn ends only if the recogniser's
own language model gives an end of sentence after the last two words a probability of at least
`sentence_end_min` (sentence_end.py): the voice of "Please remind me to call," sounds finished
to the model, "to call" does not end sentences. At the first look, where the silence is short,
voice and words must agree more: words that end a sentence clearly (P >= `clear_end_min`, 0.2)
let a less sure voice end the turn (above `clear_end_model_min`, 0.6: "Thank you very much."
scores 0.71 at 96 ms and waited for the second look, the slow tail of bench/latency.py), and
after a number (`clear_end_after_number`) the words need that clear an end whatever the voice:
a unit often follows, and its first syllable is heard as a word of its own ("set a timer for
twenty five men", P 0.135, the model 0.99). Not after one or two words: "Yes," and "Goodbye,"
(P 0.22, 0.29; the voice 0.91, 0.71) often begin a longer answer. The words are asked for at
the look, beside the model (`words_at_look`): the recogniser's answer and the model's no
longer add up (bench/latency.py in the browser, 15 turns, load 1.4-2.7: the words came 100 ms
after the look when asked after the model, 34 ms beside it; endpointing p50 272 -> 239 ms; but
asked that early they may lack the last word's end: "Thank you very much." went to the second
look once in three). A "finished" ends the turn only once Silero has heard
`finished_vad_frames` (2) silent frames in a row: in the stop inside "fifteen min-utes" it hears
one (0.31), and the model (0.97) and the words ("fifteen min", P 0.22) agree on an end, yet
"-utes" comes by the next frame. At the second look, where the trailing silence alone makes the
model sure of nearly anything, words that end a sentence only weakly (P < `clear_end_min`) end
the turn at `weak_words_end_ms` (700 ms) of silence, not at once: misheard words at a
hesitation ("somewhere near," heard "so more there", P 0.115) ended turns at 450 ms. Words
that veto an end there hold a voice the model is sure of (over 0.95) to `vetoed_words_end_ms`
(800 ms), not to the fallback: misheard words veto finished sentences ("Hello, how are you?"
heard "oh pa or you", P 0.017, the model 0.98), and the model scores a hesitation's 480 ms
just as high ("a table for"), so only a wait longer than the pauses can tell them apart.
When the words vetoed a voice that sounded finished at the first look, they are asked once more at
`words_again_ms` (192 ms) of silence and the first look decided again with them (same answer
of the model, same thresholds): asked at 96 ms the recogniser often still lacks the last word
("close to my" for "close tonight", "my foie" for "my flight"), and those turns waited for the
second look at 480 ms; a hesitation's words ("a table for") stay what they were. So too when
clear words lowered the voice's bar at the first look: the words at 96 ms depend on how much
audio the chunk that brought the look carried (the page's 40 ms chunks cut "Please wake me up
at, six fifteen" at "please wake me up", P(end) 0.21, the voice 0.69; 100 ms chunks brought the
"at"), so the turn ends only once the words at `clear_words_confirm_ms` (128 ms) agree.
Between the first look and the second the model is asked once more on the audio then, at
`middle_look_ms` (256 ms), with the first look's threshold and words but without the lower
bar clear words give, and not on one or two words (the comma of "No, thank you." heard
"nope", the model 0.966 at 256 ms): in the browser "What time is it?" scored 0.945 at 96 ms
(under 0.95, by how the 32 ms frames fell on the voice's end) with weak words ("is it",
P(end) 0.115), and waited for the second look, which holds weak words to 700 ms
(bench/latency.py). Clear words lower the middle look's bar too, but less than the first's
(`middle_clear_end_model_min`, 0.8): "Thank you very much." scored 0.539 at 96 ms and 0.845
at 256 ms in the browser and waited for the second look, while the voice of a sentence cut at
a hesitation, with clear words, scored at most 0.72 at 256 ms on bench/endpointing.py's sets
("I would like to order two," heard "i would like to war two"). Under load
the recogniser falls behind the voice and a look's words can come seconds late: once the
silence reaches `late_words_end_ms` (700 ms, longer than the pauses inside sentences the
model alone would cut) a look whose words have not come decides on the model alone, at its
own threshold, unless words heard in that pause vetoed an end (docs/scaling.md). Each rule
can be turned off by name (`RULES_OFF`, the TURN_END_RULES_OFF setting) for the behaviour
before it. Each look's inputs, and when each came, are kept in `looks` and logged at debug
level (bench/latency.py splits the endpointing wait with them). Otherwise the turn waits for
speech to resume or for `max_silence_ms` (the fallback and upper bound, longer than a
hesitation). Why these numbers:
bench/endpointing.py (endpointing.py's docstring has the figures). `end_model="off"` is the
fixed timer alone. The model's answer is waited for in `feed` (`model_wait=True`:
deterministic, for tests and benchmarks) or computed in a thread and applied by the first
`feed` after it is ready (`model_wait=False`: the event loop never waits on it;
`pending_decision` is the future, for a caller that wants to act the moment it resolves, with
`feed(b"")`).

A pause of `pause_ms` inside a turn is reported (`SpeechPaused`, once per pause) and, if the
voice comes back before the turn ends, so is that (`SpeechResumed`): the session starts a
speculative answer at the pause and cancels it when the user goes on (speculation.py).

Times are stream seconds: samples fed so far / 16000. `SpeechEnded.speech_end_s` is where the
voice stopped, not when the silence timer ran out, so latency is measured from the user's
last sound.
"""

from __future__ import annotations

import collections
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import webrtcvad

from . import sentence_end
from .audio import RATE, rms
from .endpointing import EXACT_MODES, WINDOW_S, SmartTurn
from .speculation import words_of
from .vad import SileroVad

log = logging.getLogger("server.pipeline")

END_MODELS = ("off", "smart-turn")
VADS = {"webrtc": 20, "silero": 32}  # detector → its frame length in ms
# The model's answers are computed here, one at a time: it runs only at pauses, and a request
# that waits behind others is overtaken by the turn's own fallback timer, never lost. A second
# thread (TURN_END_MODEL_THREADS, taken out) did not help on two cores: the queue went, a look's
# work grew as much, and the ten-talker tail was no better in three runs (docs/scaling.md).
_model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="turn-end-model")
# What ended a turn (`SpeechEnded.rule`); "@first", "@middle" or "@second" follows the names
# that a look decides, for the look that did. docs/protocol.md lists them as `end_rule`.
END_RULES = {
    "timer": "no turn-end model: `end_silence_ms` of silence",
    "fallback": "`max_silence_ms` of silence, whatever the looks said",
    "model": "the model's finished, no words asked (`text_veto` off)",
    "model+words": "the model's finished and words that can end a sentence",
    "weak-words": "the second look's words end a sentence only weakly: `weak_words_end_ms`",
    "vetoed-words": "the second look's words veto a sure voice: `vetoed_words_end_ms`",
    "late-words": "the words had not come by `late_words_end_ms`: the model alone",
    "client": "the client's own VAD ended it (`force_end`)",
}


@dataclass
class TurnSettings:
    vad: str = "webrtc"  # or "silero"
    aggressiveness: int = 2  # webrtcvad 0 (permissive) … 3 (strict)
    silero_threshold: float = 0.5  # Silero's speech probability above which a frame is voiced
    start_ms: int = 120  # voiced audio within the start window that opens a turn
    start_window_ms: int = 200
    end_silence_ms: int = 400  # silence that ends a turn
    preroll_ms: int = 300  # audio kept from before the start
    min_rms: float = 0.004  # energy floor (full scale 1.0) a voiced frame must pass
    end_model: str = "off"  # "smart-turn": ask the turn-end model at the first short silence
    model_silence_ms: int = 96  # silence at which the model is asked
    model_threshold: float = 0.95  # probability of "finished" above which the turn ends
    max_silence_ms: int = 1000  # with the model: silence that ends a turn whatever it said
    model_wait: bool = False  # feed() waits for the model's answer (tests, benchmarks)
    pause_ms: int = 300  # silence reported as a pause (SpeechPaused) before the turn ends
    second_look_ms: int = 450  # with the model: asked again at this silence (0: never)
    second_threshold: float = 0.9  # the second look's threshold
    text_veto: bool = True  # a "finished" needs words that can end a sentence (WordsWanted)
    sentence_end_min: float = 0.075  # P(end of sentence | last two words) the words need
    # At the first look, words that clearly end a sentence let a less sure voice end the turn.
    clear_end_min: float = 0.2  # P(end | last two words) that clearly ends a sentence
    clear_end_model_min: float = 0.6  # the first look's threshold with such words
    clear_end_min_words: int = 3  # and only after this many words ("Yes," "Goodbye," go on)
    # At the first look, after a number the words must end a sentence clearly (sentence_end.py)
    clear_end_after_number: bool = True
    look_needs_vad_silence: bool = True  # a look waits for the VAD model to hear silence too
    # The words are asked for at the look, beside the model (False: once the model heard an end)
    words_at_look: bool = True
    # A "finished" ends the turn only once the VAD model has heard this many silent frames in
    # a row (1: at once): the voice after a stop inside a word comes back by the next frame.
    finished_vad_frames: int = 2
    # At the second look, words that end a sentence only weakly (P(end) < clear_end_min) end
    # the turn at this much silence, not at once (0: at once; at most max_silence_ms).
    weak_words_end_ms: int = 700
    # At the second look, words that veto an end (P(end) < sentence_end_min) do not hold a
    # voice the model is sure of (over `model_threshold`) to the fallback: the turn ends at
    # this much silence. Misheard words veto a finished sentence ("Hello, how are you?" heard
    # "oh pa or you", P(end) 0.017, in the browser; "set an alarm for seven", P 0.040, on the
    # sets), while a hesitation's words ("a table for") need it to outlast the pause. Longer
    # than the weak words' wait (700). 0: the fallback decides (TURN_END_RULES_OFF=
    # vetoed-words-wait); at most max_silence_ms.
    vetoed_words_end_ms: int = 800
    # At the first look, a voice that sounds finished but words that do not end a sentence:
    # the words are asked once more at this much silence and the look decided again with them
    # (the recogniser often lacks the last word at 96 ms: "to my" for "tonight"). 0: never.
    words_again_ms: int = 192
    # Between the first look and the second, the model is asked once more at this much silence
    # (a middle look, on fresh audio) and decided with the first look's threshold and words,
    # without the lower bar clear words give, and not on fewer than `clear_end_min_words`
    # words ("No, thank you."): "What time is it?" scores 0.945 at 96 ms (under 0.95) with weak
    # words ("is it", P(end) 0.115) and waited for the 700 ms weak-words end of the second
    # look. 0: never (TURN_END_RULES_OFF=middle-look).
    middle_look_ms: int = 256
    # At the first look, a voice less than sure (clear_end_model_min..model_threshold) whose
    # words end a sentence clearly ends the turn only once the words asked again at this much
    # silence agree: at 96 ms the words depend on how much audio the last chunk brought (the
    # page's 40 ms chunks: "please wake me up" P(end) 0.21, the voice 0.69, ended "Please wake
    # me up at, six fifteen" at "at"; 100 ms chunks brought the "at"). Shorter than
    # `words_again_ms`: every turn ending on clear words waits for it, and the next frame
    # brings the missing word ("... up at" by 128 ms; 128-192 cut nothing, endpointing.py has
    # the figures). 0: never (TURN_END_RULES_OFF=clear-words-confirm).
    clear_words_confirm_ms: int = 128
    # At the middle look, words that clearly end a sentence (P(end) >= clear_end_min, after
    # at least `clear_end_min_words` words) let a voice above this end the turn, not only one
    # above `model_threshold`: in the browser "Thank you very much." scored 0.539 at 96 ms
    # (under `clear_end_model_min`) and 0.845 at 256 ms, and waited for the 480 ms look (the
    # p95 of bench/latency.py). Higher than the first look's 0.6: by 256 ms the silence pushes
    # the model up on sentences cut at a hesitation, whose clear words at the pause scored at
    # most 0.72 there ("I would like to war two", bench/endpointing.py). 0.5-1; at or above
    # `model_threshold`: no discount (TURN_END_RULES_OFF=middle-clear-words).
    middle_clear_end_model_min: float = 0.8
    # A "finished" whose words have not come (a recogniser behind under load) ends the turn at
    # this much silence, on the model alone, unless words heard in this pause vetoed an end;
    # the pauses inside sentences it must not cut are shorter (bench/endpointing.py: 300-600
    # ms). 0: wait for the words until `max_silence_ms`, as before (TURN_END_LATE_WORDS_MS).
    late_words_end_ms: int = 700
    # The recogniser hears at most this much of a silence inside a turn (0: all of it, as
    # before): under load a turn's end comes 0.7-1 s into its silence and the final transcript
    # waited for all of it to be decoded. A voice that comes back is given with the last
    # `onset_ms` before it (STT_SILENCE_MS).
    recognised_silence_ms: int = 300
    onset_ms: int = 96
    # The first look is asked this much before `model_silence_ms` of silence, on the audio
    # then, and a "finished" it gives ends the turn no earlier than `model_silence_ms`: the
    # model's ~75-110 ms of work runs while the rest of that silence arrives instead of after
    # it. 0: asked at `model_silence_ms`, as before (TURN_END_RULES_OFF=look-ahead).
    look_ahead_ms: int = 0
    # Whether the int8 model sums its products exactly (endpointing.py `_session`): "auto"
    # where this CPU's fast kernels would saturate, "true", "false" (TURN_END_MODEL_EXACT).
    model_exact: str = "auto"

    def __post_init__(self) -> None:
        if self.vad not in VADS:
            raise ValueError(f"vad must be one of {tuple(VADS)}, not {self.vad!r}")
        if self.end_model not in END_MODELS:
            raise ValueError(f"end_model must be one of {END_MODELS}, not {self.end_model!r}")
        if not 1 <= self.finished_vad_frames <= 10:
            raise ValueError("finished_vad_frames must be 1..10")
        if not 0 <= self.weak_words_end_ms <= 5000:
            raise ValueError("weak_words_end_ms must be 0..5000")
        if not 0 <= self.vetoed_words_end_ms <= self.max_silence_ms:
            raise ValueError("vetoed_words_end_ms must be 0..max_silence_ms")
        if not 0 <= self.words_again_ms <= 5000:
            raise ValueError("words_again_ms must be 0..5000")
        if self.clear_words_confirm_ms and not (
            self.model_silence_ms < self.clear_words_confirm_ms <= self.max_silence_ms
        ):
            raise ValueError(
                "clear_words_confirm_ms must be 0 or in model_silence_ms..max_silence_ms"
            )
        if self.middle_look_ms and not (
            self.model_silence_ms < self.middle_look_ms <= self.max_silence_ms
        ):
            raise ValueError("middle_look_ms must be 0 or in model_silence_ms..max_silence_ms")
        if not 0.5 <= self.middle_clear_end_model_min <= 1:
            raise ValueError("middle_clear_end_model_min must be 0.5..1")
        if not 0 <= self.late_words_end_ms <= 5000:
            raise ValueError("late_words_end_ms must be 0..5000")
        if not 0 <= self.recognised_silence_ms <= 5000:
            raise ValueError("recognised_silence_ms must be 0..5000")
        if self.model_exact not in EXACT_MODES:
            raise ValueError(f"model_exact must be one of {', '.join(EXACT_MODES)}")
        if not 0 <= self.look_ahead_ms < self.model_silence_ms:
            raise ValueError("look_ahead_ms must be 0 or more, under model_silence_ms")

    @property
    def frame_ms(self) -> int:
        return VADS[self.vad]

    @property
    def frame_bytes(self) -> int:
        return RATE * self.frame_ms // 1000 * 2  # 640 (webrtc) or 1024 (silero: 512 samples)


# Rules of the turn-end decision that a deployment may turn off (TURN_END_RULES_OFF), each with
# the settings that turn it off: the behaviour before it, measured side by side in the benches.
RULES_OFF: dict[str, dict[str, object]] = {
    "vad-silence": {"look_needs_vad_silence": False},  # a look waits for Silero's silence
    "words-at-look": {"words_at_look": False},  # the words are asked beside the model
    "vad-confirm": {"finished_vad_frames": 1},  # a finished needs 2 VAD-silent frames
    "weak-words-wait": {"weak_words_end_ms": 0},  # weak words at the 2nd look wait to 700 ms
    "words-again": {"words_again_ms": 0},  # words vetoing the 1st look are asked again
    "middle-look": {"middle_look_ms": 0},  # the model asked again between the 1st and 2nd look
    "clear-words-confirm": {"clear_words_confirm_ms": 0},  # words asked again must agree
    "middle-clear-words": {"middle_clear_end_model_min": 1.0},  # clear words' bar at 256 ms
    "vetoed-words-wait": {"vetoed_words_end_ms": 0},  # a sure voice's veto at 2nd look: 800
    "look-ahead": {"look_ahead_ms": 0},  # the first look starts before its silence is reached
}


def rules_off(names: tuple[str, ...] | list[str]) -> dict[str, object]:
    """The `TurnSettings` fields that turn off the named rules (RULES_OFF); unknown names are
    refused with the known ones."""
    fields: dict[str, object] = {}
    for name in names:
        if name not in RULES_OFF:
            raise ValueError(f"unknown turn-end rule {name!r}: one of {', '.join(RULES_OFF)}")
        fields.update(RULES_OFF[name])
    return fields


@dataclass
class SpeechStarted:
    preroll: bytes  # audio from before the start through the frames that triggered it
    start_s: float


@dataclass
class SpeechAudio:
    pcm: bytes


@dataclass
class SpeechPaused:
    """`pause_ms` of silence inside a turn that has not ended (yet)."""

    speech_end_s: float


@dataclass
class SpeechResumed:
    """The voice came back after a `SpeechPaused`: the turn goes on."""


@dataclass
class SpeechEnded:
    speech_end_s: float
    # Which rule ended the turn (END_RULES), for the turn's timings: where a slow turn waited.
    rule: str = ""


@dataclass
class WordsWanted:
    """The model heard an end: the words of the turn so far are wanted to confirm it. Answer
    with `hint(words, look)`, the recogniser's hypothesis of all audio it was given; until
    then the turn waits (at most until the fallback)."""

    look: int


@dataclass
class Look:
    """One question to the turn-end model and the inputs that decided it, for the log (debug
    level) and for bench/endpointing.py, which prints them for every turn it cut."""

    look: int
    silence_ms: int  # silence when the model was asked
    words_again: bool = False  # the first look's model answer, decided again with new words
    kind: str = "first"  # "first", "middle" or "second" (whose thresholds decide it)
    probability: float | None = None  # the model's "finished"
    words: str | None = None  # the recogniser's words, when they were asked for
    end_probability: float | None = None  # P(end of sentence | the last two words)
    finished: bool | None = None  # the verdict
    held: str = ""  # a "finished" waiting to be confirmed by more silence, and what came of it
    # When (time.monotonic()) each input came: where a look's time goes (bench/latency.py).
    asked_at: float = field(default_factory=time.monotonic)
    # The model's thread took the look up, and answered: its queue and its work (timing.py).
    started_at: float | None = None
    answered_at: float | None = None
    words_asked_at: float | None = None
    words_at: float | None = None
    decided_at: float | None = None

    @property
    def queued_s(self) -> float:
        """How long the look waited for the model's thread (0 until the model took it)."""
        if self.started_at is None:
            return 0.0
        return self.started_at - self.asked_at

    @property
    def worked_s(self) -> float:
        if self.started_at is None or self.answered_at is None:
            return 0.0
        return self.answered_at - self.started_at

    def __str__(self) -> str:
        def number(value):
            return "-" if value is None else f"{value:.3f}"

        def after(at):
            return "-" if at is None else f"{1000 * (at - self.asked_at):.0f}"

        again = " (words again)" if self.words_again else ""
        return (
            f"look {self.look} ({self.kind}) at {self.silence_ms} ms{again}: "
            f"model {number(self.probability)}, "
            f"words {self.words!r}, P(end) {number(self.end_probability)} -> {self.finished}"
            f"{' ' + self.held if self.held else ''} "
            f"(ms after asking: model {after(self.answered_at)}, words asked "
            f"{after(self.words_asked_at)}, came {after(self.words_at)}, verdict "
            f"{after(self.decided_at)})"
        )


Event = SpeechStarted | SpeechAudio | SpeechPaused | SpeechResumed | SpeechEnded | WordsWanted


class TurnDetector:
    def __init__(self, settings: TurnSettings | None = None):
        self.settings = settings or TurnSettings()
        if self.settings.vad == "silero":
            self._silero: SileroVad | None = SileroVad(self.settings.silero_threshold)
        else:
            self._silero = None
            self._vad = webrtcvad.Vad(self.settings.aggressiveness)
        self._model: SmartTurn | None = None
        if self.settings.end_model == "smart-turn":
            self._model = SmartTurn(
                threshold=self.settings.model_threshold, exact=self.settings.model_exact
            )
            self._model.warm()
            if self.settings.text_veto:
                sentence_end.warm()
        self._look = 0  # the model's looks so far, never reset: a late answer names its own
        # The looks of the current (or last) turn and their inputs, newest last.
        self.looks: collections.deque[Look] = collections.deque(maxlen=16)
        self._words_asked = 0  # the last look whose words were asked for
        self.reset()

    def reset(self) -> None:
        s = self.settings
        self._partial = b""
        self._frames_fed = 0
        self._recent: collections.deque[tuple[bytes, bool]] = collections.deque(
            maxlen=max(1, (s.preroll_ms + s.start_window_ms) // s.frame_ms)
        )
        self._window: collections.deque[bool] = collections.deque(
            maxlen=max(1, s.start_window_ms // s.frame_ms)
        )
        self._in_speech = False
        self._silent_frames = 0
        self._last_voice_end_s = 0.0
        self._detector_hears_voice = False  # the VAD's verdict on the last frame, energy aside
        self._vad_silent_frames = 0  # frames in a row the VAD heard no voice, energy aside
        # A "finished" waiting for more silence: (silence in ms, VAD-silent frames) it needs.
        self._hold: tuple[int, int] | None = None
        self._turn_audio = bytearray()  # the turn so far (last WINDOW_S), what the model hears
        self._paused = False  # SpeechPaused was reported for the current silence
        # The kind of the pause's latest look (Look.kind); None: the model not asked yet.
        self._kind: str | None = None
        self._decision: Future | None = None  # its answer (a probability), while the pause lasts
        # The first look's answer, when its words vetoed it: decided again with new words
        # (`words_again_ms`), once a pause.
        self._words_again: float | None = None
        self._words_again_ms = 0  # the silence at which they are (a veto's or a confirm's)
        self._vetoed_in_pause = False  # words heard in this pause vetoed a "finished"
        # The end of a long silence the recogniser was not given (`_to_recogniser`).
        self._unheard: collections.deque[bytes] = collections.deque(
            maxlen=max(1, s.onset_ms // s.frame_ms)
        )
        self._words_for = 0  # the look whose words came (`hint`; they are in `looks`)
        self._requests: list[WordsWanted] = []  # to go out with this feed's events
        self._end_rule = ""  # the rule of the latest "finished" (END_RULES), for SpeechEnded

    @property
    def pending_decision(self) -> Future | None:
        """The model's answer being computed for the current pause (`model_wait=False`)."""
        return self._decision

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    def _is_voiced(self, frame: bytes) -> bool:
        """Voice and energy above the floor. With Silero, `_detector_hears_voice` keeps its own
        verdict, energy aside: a look at the silence waits for it (`_turn_is_over`)."""
        if self._silero is not None:
            quiet = rms(frame) < self.settings.min_rms
            if quiet and not self._in_speech:
                # Between turns a quiet frame is never voiced and no look asks the detector:
                # Silero hears it later, if a loud frame follows soon (vad.py's `skip`).
                self._silero.skip(frame)
                self._detector_hears_voice = False
                return False
            # Within a turn Silero hears every frame, quiet or not: a look at a silence waits
            # for its verdict (a stop inside a word is quiet, yet still speech to Silero).
            self._detector_hears_voice = self._silero.is_speech(frame)
            return self._detector_hears_voice and not quiet
        # webrtcvad keeps no state to speak of: its verdict on quiet frames is not asked.
        return rms(frame) >= self.settings.min_rms and self._vad.is_speech(frame, RATE)

    def feed(self, pcm: bytes) -> list[Event]:
        s = self.settings
        data = self._partial + pcm
        size = s.frame_bytes
        whole = len(data) - len(data) % size
        self._partial = data[whole:]
        events: list[Event] = []
        if self._in_speech and self._decided_finished():  # answered since the last feed
            events += self._end()
        audio = bytearray()  # speech audio of this call, flushed before any boundary event
        for offset in range(0, whole, size):
            frame = data[offset : offset + size]
            voiced = self._is_voiced(frame)
            self._frames_fed += 1
            frame_end_s = self._frames_fed * s.frame_ms / 1000
            if not self._in_speech:
                self._recent.append((frame, voiced))
                self._window.append(voiced)
                if sum(self._window) * s.frame_ms >= s.start_ms:
                    self._in_speech = True
                    self._silent_frames = 0
                    self._last_voice_end_s = frame_end_s
                    first_voiced = len(self._window) - list(self._window).index(True)
                    start_s = frame_end_s - first_voiced * s.frame_ms / 1000
                    preroll = b"".join(f for f, _ in self._recent)
                    self._recent.clear()
                    self._window.clear()
                    self._turn_audio = bytearray(preroll)
                    self.looks.clear()
                    events.append(SpeechStarted(preroll=preroll, start_s=round(start_s, 3)))
                continue
            if voiced and self._paused:  # the user went on, from this frame
                self._paused = False
                if audio:
                    events.append(SpeechAudio(bytes(audio)))
                    audio.clear()
                events.append(SpeechResumed())
            if voiced:
                self._silent_frames = 0
                self._last_voice_end_s = frame_end_s
                self._drop_decision()  # the user went on
                self._kind = None
                self._words_again = None
                self._vetoed_in_pause = False
            else:
                self._silent_frames += 1
            if voiced or self._detector_hears_voice:
                self._vad_silent_frames = 0
                self._drop_hold("voice")
            else:
                self._vad_silent_frames += 1
            self._to_recogniser(frame, audio)
            if self._model is not None:
                self._remember(frame)
            if not voiced and self._turn_is_over():
                events.append(SpeechAudio(bytes(audio)))
                audio.clear()
                events += self._end()
            elif not voiced and not self._paused and self._silent_frames * s.frame_ms >= s.pause_ms:
                self._paused = True
                if audio:
                    events.append(SpeechAudio(bytes(audio)))
                    audio.clear()
                events.append(SpeechPaused(speech_end_s=round(self._last_voice_end_s, 3)))
        if audio:
            events.append(SpeechAudio(bytes(audio)))
        events += self._requests  # after the audio: the words asked for cover it
        self._requests = []
        return events

    def _to_recogniser(self, frame: bytes, audio: bytearray) -> None:
        """This frame of the turn to the recogniser (`audio`), unless it lies beyond
        `recognised_silence_ms` of a silence: that is kept back (its last `onset_ms`, for a
        voice that comes back softly) and never decoded if the silence goes on."""
        s = self.settings
        silent_ms = self._vad_silent_frames * s.frame_ms
        if not s.recognised_silence_ms or silent_ms <= s.recognised_silence_ms:
            audio += b"".join(self._unheard)  # the voice came back: its onset first
            self._unheard.clear()
            audio += frame
        else:
            self._unheard.append(frame)

    def _remember(self, frame: bytes) -> None:
        self._turn_audio += frame
        excess = len(self._turn_audio) - WINDOW_S * RATE * 2
        if excess > 0:
            del self._turn_audio[:excess]

    def _turn_is_over(self) -> bool:
        """After this silent frame: has the user finished?"""
        s = self.settings
        silent_ms = self._silent_frames * s.frame_ms
        if self._model is None:
            if silent_ms < s.end_silence_ms:
                return False
            self._end_rule = "timer"
            return True
        if silent_ms >= s.max_silence_ms:
            self._end_rule = "fallback"
            return True
        if self._hold is not None:
            return self._hold_is_over()
        second = s.second_look_ms and silent_ms >= s.second_look_ms and self._decision is None
        first = silent_ms >= s.model_silence_ms - s.look_ahead_ms and self._kind is None
        # After the first look's words are decided again (at once, when its answer came late):
        # a "finished" on clear words that waits for them must not lose them to the middle
        # look, which gives no discount.
        middle = (
            s.middle_look_ms
            and silent_ms >= s.middle_look_ms
            and self._kind == "first"
            and self._decision is None
            and self._words_again is None
            and not second
        )
        # The silence must be silence to the detector's model too, not only quiet: the stop
        # inside "min-utes" is ~100 ms under the energy floor while Silero, which follows the
        # stream, still hears speech (0.57-0.83, against 0.02-0.49 at 96 ms after most ends).
        agrees = not (s.look_needs_vad_silence and self._detector_hears_voice)
        again = (
            self._words_again is not None
            and silent_ms >= self._words_again_ms
            and self._decision is None
            and not second
        )
        if again and agrees:
            self._decide_with_words_again(silent_ms)
        elif (first or middle or (self._kind in ("first", "middle") and second)) and agrees:
            self._kind = "first" if first else "middle" if middle else "second"
            self._look += 1
            look = Look(look=self._look, silence_ms=silent_ms, kind=self._kind)
            self.looks.append(look)
            self._decision = self._ask(bytes(self._turn_audio), look)
            if s.text_veto and s.words_at_look:
                self._want_words()  # beside the model, not after it: neither waits on the other
        asked_ahead = s.look_ahead_ms and self._kind == "first" and self._decision is not None
        if asked_ahead and s.text_veto and s.words_at_look:
            self._want_words()  # a look asked ahead: its words at its own silence
        return self._decided_finished()

    def _decide_with_words_again(self, silent_ms: int) -> None:
        """Decide the first look again with the words as the recogniser hears them now: the
        model's answer is the first look's (its audio gained only silence), the thresholds too."""
        probability, self._words_again = self._words_again, None
        self._look += 1
        look = Look(look=self._look, silence_ms=silent_ms, words_again=True, kind=self._kind)
        look.started_at = look.answered_at = look.asked_at
        self.looks.append(look)
        self._decision = Future()
        self._decision.set_result(probability)
        self._want_words()

    def _want_words(self) -> None:
        """Ask for the words of this look (WordsWanted), once; for a first look asked ahead
        (`look_ahead_ms`) not before its `model_silence_ms`: the recogniser hears the last word
        out ("fifteen min" at 64 ms of the stop inside "min-utes", P(end) 0.22, a clear end;
        "fifteen minute" at 96 ms, 0.14, bench/endpointing.py), the model's work is what runs
        ahead."""
        s = self.settings
        if self._kind == "first" and self._silent_frames * s.frame_ms < s.model_silence_ms:
            return
        if self._words_asked != self._look:
            self._words_asked = self._look
            self.looks[-1].words_asked_at = time.monotonic()
            self._requests.append(WordsWanted(look=self._look))

    def _decided_finished(self) -> bool:
        """The model's answer for this look, once: True ends the turn. "Finished" needs the
        look's threshold, and (`text_veto`) words that can end a sentence: they are asked for
        (WordsWanted) and the answer waits for them. A failure leaves it to the fallback."""
        s = self.settings
        decision = self._decision
        if decision is None or not decision.done():
            return False
        error = decision.exception()
        if error is not None:
            self._decision = None
            log.warning("the turn-end model failed (the silence timer decides): %s", error)
            return False
        look = self.looks[-1]
        look.probability = probability = decision.result()
        threshold = s.second_threshold if self._kind == "second" else s.model_threshold
        # At the first look, words that clearly end a sentence lower the voice's bar; at the
        # middle look less (`middle_clear_end_model_min`); not at the second, where the
        # trailing silence alone pushes the model higher on sentences cut at a hesitation
        # (bench/endpointing.py).
        clear_bar = {"first": s.clear_end_model_min, "middle": s.middle_clear_end_model_min}
        lowest = min(threshold, clear_bar.get(self._kind, threshold)) if s.text_veto else threshold
        if probability <= lowest:
            self._decision = None
            return self._verdict(look, False)
        if s.text_veto and self._words_for != self._look:
            if self._words_are_late():
                return self._decide_without_words(look, probability, threshold)
            self._want_words()
            return False
        self._decision = None
        if not s.text_veto:
            self._end_rule = f"model@{self._kind}"
            return self._verdict(look, True)
        few_words = len(words_of(look.words or "")) < s.clear_end_min_words
        if self._kind == "middle" and few_words:
            # "No," "Yes," "Goodbye," with the comma's silence: by 256 ms the voice sounds
            # finished ("No, thank you." heard "nope", the model 0.966), yet they often begin
            # a longer answer; the second look decides.
            return self._verdict(look, False)
        if probability > threshold:
            wanted = s.sentence_end_min
        elif not few_words:
            wanted = s.clear_end_min
        else:
            return self._words_vetoed(look, probability)
        if (
            self._kind != "second"
            and s.clear_end_after_number
            and sentence_end.near_a_number(look.words or "")
        ):
            wanted = max(wanted, s.clear_end_min)
        end_probability = look.end_probability
        if end_probability is None or end_probability < wanted:
            if self._kind == "second" and s.vetoed_words_end_ms and probability > s.model_threshold:
                # words misheard?
                return self._hold_finished(look, s.vetoed_words_end_ms, "vetoed-words")
            return self._words_vetoed(look, probability)
        if (
            probability <= threshold
            and s.clear_words_confirm_ms
            and self._kind == "first"
            and not look.words_again
        ):  # the voice was not sure and the words came early: they must say so again later
            self._words_again, self._words_again_ms = probability, s.clear_words_confirm_ms
            look.held = f"clear words to be confirmed at {s.clear_words_confirm_ms} ms"
            return self._verdict(look, False)
        # Finished; it ends the turn once the silence is confirmed (at once, mostly).
        if self._kind == "second" and end_probability < s.clear_end_min:
            # at the second look the words alone decide
            return self._hold_finished(look, s.weak_words_end_ms, "weak-words")
        return self._hold_finished(look, 0, f"model+words@{self._kind}")

    def _hold_finished(self, look: Look, silence_ms: int, rule: str) -> bool:
        """A "finished" that ends the turn once the silence reaches `silence_ms` and the VAD
        model has heard `finished_vad_frames` silent frames in a row (at once, mostly); `rule`
        (END_RULES) names it as what ended the turn."""
        self._end_rule = rule
        frames = self.settings.finished_vad_frames
        if self._kind == "first":  # a look asked ahead (`look_ahead_ms`) ends no earlier
            silence_ms = max(silence_ms, self.settings.model_silence_ms)
        self._hold = (silence_ms, frames)
        if self._hold_is_over():
            return self._verdict(look, True)
        look.held = f"held for {silence_ms} ms, {frames} VAD-silent frames"
        return self._verdict(look, True, log_it=False)

    def _words_vetoed(self, look: Look, probability: float) -> bool:
        """The voice sounded finished, the words did not: at the first look, they are asked
        again later (`words_again_ms`), once."""
        self._vetoed_in_pause = True
        if self._kind == "first" and not look.words_again and self.settings.words_again_ms:
            self._words_again, self._words_again_ms = probability, self.settings.words_again_ms
        return self._verdict(look, False)

    def _words_are_late(self) -> bool:
        """The words of this look have not come by `late_words_end_ms` of silence (and none
        heard in this pause vetoed an end): the look decides without them."""
        s = self.settings
        return (
            s.late_words_end_ms > 0
            and self._silent_frames * s.frame_ms >= s.late_words_end_ms
            and not self._vetoed_in_pause
        )

    def _decide_without_words(self, look: Look, probability: float, threshold: float) -> bool:
        """The model alone, at its own threshold (not the lower bar clear words allow), after a
        silence longer than the pauses inside sentences: a recogniser behind under load no
        longer holds the turn to the 1 s fallback. Not "finished": the look is over, and a
        second look (if any is left) asks again."""
        self._decision = None
        look.held = f"words late at {self._silent_frames * self.settings.frame_ms} ms"
        if probability <= threshold:
            return self._verdict(look, False)
        self._end_rule = f"late-words@{self._kind}"
        self._hold = (0, self.settings.finished_vad_frames)
        if self._hold_is_over():
            return self._verdict(look, True)
        return self._verdict(look, True, log_it=False)

    def _hold_is_over(self) -> bool:
        """Has the silence a held "finished" waits for come (ending the turn)?"""
        silence_ms, vad_frames = self._hold
        done = (
            self._silent_frames * self.settings.frame_ms >= silence_ms
            and self._vad_silent_frames >= vad_frames
        )
        if done:
            self._hold = None
            if self.looks and self.looks[-1].held:
                self.looks[-1].held += " -> ended"
                log.debug("turn end %s", self.looks[-1])
        return done

    def _drop_hold(self, why: str) -> None:
        """The voice came back before a held "finished" was confirmed: the turn goes on."""
        if self._hold is None:
            return
        self._hold = None
        if self.looks and self.looks[-1].held:
            self.looks[-1].held += f" -> dropped ({why})"
            log.debug("turn end %s", self.looks[-1])

    def _verdict(self, look: Look, finished: bool, log_it: bool = True) -> bool:
        look.finished, look.decided_at = finished, time.monotonic()
        if log_it:
            log.debug("turn end %s", look)
        return finished and self._hold is None

    def hint(self, words: str, look: int) -> None:
        """The words of the turn so far, answering `WordsWanted(look)`: if they seldom end a
        sentence ("a table for", "remind me to call") the model's "finished" is overruled."""
        if look != self._look or not self._in_speech:
            return  # a late answer for a look the voice has moved past
        self._words_for = look
        probability = sentence_end.end_probability(words)
        if self.looks and self.looks[-1].look == look:
            self.looks[-1].words, self.looks[-1].end_probability = words, probability
            self.looks[-1].words_at = time.monotonic()

    def _ask(self, pcm: bytes, look: Look) -> Future:
        model = self._model

        def probability() -> float:
            look.started_at = time.monotonic()
            try:
                return model.probability(pcm)
            finally:
                look.answered_at = time.monotonic()

        if self.settings.model_wait:
            future: Future = Future()
            try:
                future.set_result(probability())
            except Exception as error:  # the model failing must never break the turn
                future.set_exception(error)
            return future
        return _model_thread.submit(probability)

    def _drop_decision(self) -> None:
        """Forget this pause's look; one still waiting for the model's thread is cancelled, so
        the model never runs for a pause that is over (under load, looks queue behind other
        sessions': the voice often comes back first)."""
        if self._decision is not None:
            self._decision.cancel()  # no effect once it runs or has run
        self._decision = None

    def _end(self) -> list[Event]:
        rule, self._end_rule = self._end_rule, ""
        self._in_speech = False
        self._silent_frames = 0
        self._turn_audio = bytearray()
        self._drop_decision()
        self._hold = None
        self._vad_silent_frames = 0
        self._kind = None
        self._words_again = None
        self._vetoed_in_pause = False
        self._unheard.clear()
        self._paused = False
        self._requests = []
        return [SpeechEnded(speech_end_s=round(self._last_voice_end_s, 3), rule=rule)]

    def force_end(self) -> list[SpeechEnded]:
        """End the turn in progress now (the client's own VAD said the speech is over)."""
        if not self._in_speech:
            return []
        self._end_rule = "client"
        return self._end()
