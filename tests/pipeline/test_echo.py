"""The echo defence on real Piper speech: the agent's own voice from the speakers never opens a
user turn, a person talking over it does, quickly.

The microphone is made the way a laptop without a headset makes it: the agent's answer, delayed
(browser output latency + network + input latency), attenuated, with a little noise, optionally
through an 8 kHz microphone (the official SDK's rate) upsampled to 16 kHz. Every case also runs
without the guard, so each test shows the raw microphone does open turns: the test can fail.
Times are stream times (samples fed to the detector), never the wall clock.
"""

from __future__ import annotations

import numpy as np
import pytest

from server.agent import brain
from server.pipeline.echo import EchoGuard, EchoSettings
from server.pipeline.echo_fine import comb
from server.pipeline.echo_gate import PERSON_COMBS, GateSettings
from server.pipeline.timing import StreamClock
from server.pipeline.turns import SpeechStarted, TurnDetector
from tests.support import chromium_echo
from tests.support.echo import FRAME, RATE, samples
from tests.support.echo import microphone as speaker_echo
from tests.support.echo import turn_starts as detector_starts
from tests.support.speech import speak, speak_espeak, voiced_span
from tests.support.streaming_agent import SENTENCES

ANSWER = (
    "Sure. The museum opens at nine in the morning and closes at six in the evening. "
    "Tickets cost twelve dollars for adults, and children under five go in for free. "
    "On Sundays there is a guided tour of the modern art wing at eleven."
)
QUESTION = "Wait, can you tell me about parking instead?"
DUE_S = 0.5  # stream time at which the answer was due to play
PERSON_AT_S = 4.0  # stream time at which the person's question begins (with its lead-in)


def microphone(delay_s: float, level_db: float, *, person: bool = False, **options) -> bytes:
    return speaker_echo(
        speak(ANSWER),
        DUE_S,
        delay_s,
        level_db,
        person=speak(QUESTION) if person else b"",
        person_at_s=PERSON_AT_S,
        **options,
    )


def person_starts_s() -> float:
    """Stream time where the person's voice begins."""
    return PERSON_AT_S + voiced_span(speak(QUESTION))[0]


def turn_starts(mic: bytes, guard: EchoGuard | None, drop_after_s: float | None = None) -> list:
    if guard is not None:
        guard.add_reference(speak(ANSWER), DUE_S)
    return detector_starts(mic, guard, drop_after_s)


ECHO_CASES = [
    pytest.param(delay, level, options, id=name)
    for name, delay, level, options in [
        ("50ms-6dB", 0.05, -6, {}),
        ("50ms-20dB", 0.05, -20, {}),
        ("150ms-6dB", 0.15, -6, {}),
        ("150ms-20dB", 0.15, -20, {}),
        ("300ms-6dB", 0.3, -6, {}),
        ("300ms-20dB", 0.3, -20, {}),
        ("900ms-6dB", 0.9, -6, {}),  # a slow browser: output latency + network
        ("900ms-20dB", 0.9, -20, {}),
        ("150ms-6dB-8kHz-mic", 0.15, -6, {"rate": 8000}),
        ("900ms-20dB-8kHz-mic", 0.9, -20, {"rate": 8000}),
        ("300ms-6dB-room-rt60-0.3s", 0.3, -6, {"rt60_s": 0.3}),
        ("150ms-6dB-playback-stall-250ms", 0.15, -6, {"jump": (6.0, 0.25)}),
    ]
]


@pytest.mark.parametrize(("delay_s", "level_db", "options"), ECHO_CASES)
def test_the_agents_own_voice_never_starts_a_turn(delay_s, level_db, options):
    mic = microphone(delay_s, level_db, **options)
    assert turn_starts(mic, None), "the raw echo should open a turn, or this test proves nothing"
    assert turn_starts(mic, EchoGuard()) == []


@pytest.mark.parametrize(("delay_s", "level_db", "options"), ECHO_CASES)
def test_a_person_talking_over_the_agent_starts_a_turn_within_300ms(delay_s, level_db, options):
    mic = microphone(delay_s, level_db, person=True, **options)
    starts = turn_starts(mic, EchoGuard())
    assert starts, "the person was never heard"
    assert 0 <= starts[0] - person_starts_s() <= 0.3


@pytest.mark.parametrize(("delay_s", "level_db"), [(0.05, -6), (0.3, -6), (0.9, -20)])
def test_an_echo_through_a_browsers_capture_processing_never_starts_a_turn(delay_s, level_db):
    """Processed like Chromium's capture path (tests/support/echo.py, capture_processing): the
    linear filter leaves too much of it; the envelope gate (echo_gate.py) mutes the rest."""
    mic = microphone(delay_s, level_db, processed=True)
    assert turn_starts(mic, None), "the raw echo should open a turn, or this test proves nothing"
    assert turn_starts(mic, EchoGuard(EchoSettings(gate=GateSettings(enabled=False))))
    assert turn_starts(mic, EchoGuard(EchoSettings(gate=GateSettings(enabled=True)))) == []


def test_without_the_defence_the_echo_interrupts_before_the_person_speaks():
    starts = turn_starts(microphone(0.3, -20, person=True), EchoGuard(EchoSettings(enabled=False)))
    assert starts[0] < person_starts_s()


def test_a_headset_mic_hears_the_person_once_no_echo_is_found():
    """No echo at all: the guard holds the person's first 0.3 s while it looks for an echo,
    then releases it whole: the turn starts at the same stream time, only decided later."""
    mic = microphone(0.3, -120, person=True)
    starts = turn_starts(mic, EchoGuard())
    assert starts and 0 <= starts[0] - person_starts_s() <= 0.3
    guard = EchoGuard()
    guard.add_reference(speak(ANSWER), DUE_S)
    fed = out = lag = 0
    for offset in range(0, len(mic), FRAME * 2):
        chunk = mic[offset : offset + FRAME * 2]
        fed += len(chunk)
        out += len(guard.clean(chunk))
        lag = max(lag, fed - out)
    assert FRAME * 2 < lag <= round(guard.settings.give_up_s * RATE) * 2
    assert out == fed - fed % (FRAME * 2)  # all of it, but for a last partial block


def test_a_word_shared_with_the_agent_in_the_same_voice_is_not_taken_for_echo():
    """With a headset, the person says a word the agent just said, in the same synthetic voice
    (as tests and benchmarks do): the correlation can lock on it, but the cancellation does not
    prove the lock, so the person's audio comes out whole and opens a turn at once."""
    agent = speak("Hi! I'm the demo agent running on this machine. Ask me the time, or say help.")
    person = speak("What time is it?")
    at = 2.5
    mic = speaker_echo(agent, 0.0, 0.2, -120, person=person, person_at_s=at, person_db=0.0)
    guard = EchoGuard()
    guard.add_reference(agent, 0.0)
    out = guard.clean(mic)
    assert out == mic[: len(out)] and len(mic) - len(out) < FRAME * 2
    guard = EchoGuard()
    guard.add_reference(agent, 0.0)
    starts = detector_starts(mic, guard)
    assert starts and 0 <= starts[0] - (at + voiced_span(person)[0]) <= 0.3


def test_audio_held_to_prove_a_lock_comes_out_once_no_agent_audio_is_due():
    """A lock found near the end of an answer's echo (processed like Chromium's: the proof
    takes its full `converge_s`) is still unproven when no agent audio can be heard any more.
    What was held for the proof must come out then, not wait for the next answer: a person's
    words held there would wait for an answer that needs them first."""
    answer = speak(ANSWER)[: round(0.6 * RATE) * 2]
    guard = EchoGuard()
    guard.add_reference(answer, 0.0)
    mic = speaker_echo(answer, 0.0, 1.1, -6, processed=True) + bytes(3 * RATE * 2)
    out = guard.clean(mic)
    assert guard.delay is not None, "no lock: this test proves nothing"
    assert len(out) == len(mic) - len(mic) % (FRAME * 2)


def test_audio_the_client_never_played_is_not_subtracted_from_the_person():
    """The client stopped playing early and nobody told the guard: subtracting the answer's
    unplayed rest would add the agent's voice to the person's; the guard passes the mic."""
    stop_s = 3.0  # the client stopped playing here; the person asks at PERSON_AT_S
    mic = microphone(0.3, -6, person=True, echo_until_s=stop_s)
    guard = EchoGuard()
    guard.add_reference(speak(ANSWER), DUE_S)
    out = guard.clean(mic)
    after = round((stop_s + 0.3 + 0.1) * RATE) * 2  # once the last echo has died away
    assert np.abs(samples(out[after:])).sum() <= np.abs(samples(mic[after : len(out)])).sum()
    starts = turn_starts(mic, EchoGuard())
    assert len(starts) == 1 and 0 <= starts[0] - person_starts_s() <= 0.3


def test_a_dropped_reference_is_forgotten():
    """After `drop_reference_after` (the agent was interrupted) the guard stops working on the
    microphone as soon as the last played audio's echo can no longer arrive."""
    stop_s = 3.0
    mic = microphone(0.3, -6, person=True, echo_until_s=stop_s)
    guard = EchoGuard()
    guard.add_reference(speak(ANSWER), DUE_S)
    cut = round(stop_s * RATE) * 2
    out = guard.clean(mic[:cut])
    guard.drop_reference_after(stop_s)
    out += guard.clean(mic[cut:])
    settings = guard.settings
    free = round((stop_s + settings.max_delay_s + settings.search_window_s + 0.05) * RATE) * 2
    assert out[free:] == mic[free : len(out)]
    kept = EchoGuard()
    kept.add_reference(speak(ANSWER), DUE_S)
    assert kept.clean(mic)[free:] != mic[free : len(out)]  # without the drop it would not be


def test_the_output_is_the_input_stream_sample_for_sample():
    guard = EchoGuard()
    guard.add_reference(speak(ANSWER), DUE_S)
    mic = microphone(0.15, -6)
    out = b"".join(guard.clean(mic[i : i + 1234]) for i in range(0, len(mic), 1234))
    assert len(out) == len(mic) - len(mic) % (FRAME * 2)
    assert guard.position * 2 == len(out)
    assert guard.delay == round(0.15 * RATE)


def test_silence_passes_untouched_when_no_agent_audio_is_due():
    guard = EchoGuard()
    guard.add_reference(speak(QUESTION), 30.0)  # due long after this microphone audio
    mic = microphone(0.15, -120, person=True)
    assert guard.clean(mic) == mic[: len(mic) - len(mic) % (FRAME * 2)]


def test_the_stream_clock_places_a_due_time_in_stream_time():
    clock = StreamClock(RATE)
    clock.advance(RATE * 2, arrival=100.0)  # 2 s of microphone audio, the last at t=100
    assert clock.stream_time_of(100.25) == 2.25
    assert clock.wall_time_of(clock.stream_time_of(101.0)) == 101.0


def test_agent_audio_beyond_the_bound_is_refused_and_counted():
    guard = EchoGuard(EchoSettings(max_reference_s=1.0))
    second = bytes(RATE * 2)
    guard.add_reference(second, 0.0)
    guard.add_reference(second, 1.0)  # 2 s held: over the bound
    assert guard.refused_reference_s == 1.0
    guard.clean(bytes(RATE * 2 * 4))  # 4 s later the first second is forgotten
    guard.add_reference(second, 4.0)
    assert guard.refused_reference_s == 1.0


@pytest.mark.parametrize("bad", [{"lock_score": 0.0}, {"learn_score": 1.5}, {"doubt_s": 0.0},
                                 {"every": 0}, {"margin_db": -1.0}, {"sure_db": 1.0}])  # fmt: skip
def test_gate_settings_out_of_bounds_are_refused(bad):
    with pytest.raises(ValueError, match="echo gate"):
        GateSettings(**bad)


GATED = EchoSettings(gate=GateSettings(enabled=True))  # the default, spelled out


def held_after(mic: bytes, guard: EchoGuard, from_s: float) -> int:
    """The most microphone audio (bytes) `guard` had taken in but not yet given out, 20 ms
    block by block, from stream time `from_s` on: what the VAD waits for."""
    guard.add_reference(speak(ANSWER), DUE_S)
    fed = out = held = 0
    for offset in range(0, len(mic) - FRAME * 2 + 1, FRAME * 2):
        chunk = mic[offset : offset + FRAME * 2]
        fed += len(chunk)
        out += len(guard.clean(chunk))
        if offset >= from_s * RATE * 2:
            held = max(held, fed - out)
    return held


@pytest.mark.parametrize(("delay_s", "level_db"), [(0.05, -20), (0.3, -6)])
def test_a_person_over_a_cancelled_echo_is_not_held(delay_s, level_db):
    """The linear filter cancels this echo (its output is quiet where the echo was), so the
    gate, on by default, has nothing to learn and must not hold the person's voice while it
    looks for an echo the filter already removed: the VAD hears them at once."""
    mic = microphone(delay_s, level_db, person=True)
    assert held_after(mic, EchoGuard(GATED), person_starts_s() - 0.1) == 0


def barge_ins(guard: EchoGuard, into_s: list[float]) -> list[float | None]:
    """A session's worth of barge-ins through one guard, no echo at all (a headset): per
    round an answer is due, a person says "Stop. What time is it?" `into_s` seconds into it
    in the agent's own Piper voice, and the answer is dropped where the VAD hears them, as the
    session does. Each round's turn start (stream time) after the person's voice, or None."""
    answer = b"".join(speak(sentence) for sentence in SENTENCES[:3])
    question = speak("Stop. What time is it?")
    detector = TurnDetector()
    rng = np.random.default_rng(5)
    fed = out = 0
    starts: list[float | None] = []
    for at in into_s:
        due = fed / RATE + 0.5
        guard.add_reference(answer, due)
        lead = round((due + at) * RATE) - fed
        mic = np.concatenate((np.zeros(lead), samples(question), np.zeros(3 * RATE)))
        mic = np.clip(mic + rng.normal(0, 30, mic.size), -32768, 32767).astype("<i2").tobytes()
        voice_s = (fed + lead) / RATE + voiced_span(question)[0]
        start = None
        for offset in range(0, len(mic), FRAME * 2):
            fed += FRAME
            pcm = guard.clean(mic[offset : offset + FRAME * 2])
            out += len(pcm) // 2
            heard = any(isinstance(e, SpeechStarted) for e in detector.feed(pcm))
            if heard and start is None:
                start = round(out / RATE - voice_s, 2)
                guard.drop_reference_after(fed / RATE)
        starts.append(start)
        guard.drop_reference_after(fed / RATE)
    return starts


def test_a_person_in_the_agents_voice_is_not_learned_as_echo():
    """With no echo, a person starting as far into the answer as an echo could lag lines up
    with the answer's onset, envelope for envelope. The gate learned their level over the
    reference's silences as the echo's (gains of +26 dB: bench/bargein.py missed a barge-in)
    and muted the first words of the next ones (turn starts 1.1-1.2 s late). Learning only
    where the reference plays, round after round the person opens the turn at most 0.2 s
    after the guard without the gate lets them (its first-answer hold included)."""
    into_s = [0.9, 1.0, 1.1, 1.2, 0.8, 1.0]
    without = barge_ins(EchoGuard(EchoSettings(gate=GateSettings(enabled=False))), into_s)
    assert None not in without and max(without) <= 0.3, "the VAD itself is late"
    starts = barge_ins(EchoGuard(GATED), into_s)
    assert None not in starts, starts
    # The comb check (echo_fine.py) refuses the envelope's lock on them: no cost at all.
    # Envelope only, it held some of them 0.2-0.3 s more.
    assert starts == without


WEATHER = (
    "The weather tomorrow looks mild, with a high of eighteen degrees and light wind from the "
    "west. Rain is likely in the late afternoon, so bring an umbrella if you are out after "
    "four. The weekend should be dry and sunny."
)


@pytest.mark.parametrize(
    ("answer_text", "share", "voice"),
    [(WEATHER, 0.2, speak_espeak), (WEATHER, 0.4, speak_espeak)],
    ids=["weather-0.2-espeak", "weather-0.4-espeak"],
)
def test_a_short_first_word_over_a_loud_processed_echo_is_heard(answer_text, share, voice):
    """A short "Wait," said over an echo as loud as the person, processed like Chromium's: the gate
    muted the parts of the word the echo alone could explain, so the VAD heard 100 ms of it
    and opened the turn on the next words, 0.7-0.9 s late (bench/echo.py, 3 of 12 in espeak's
    voice). In the agent's own Piper voice, 3 dB quieter than the echo, it still can be."""
    answer, question = speak(answer_text), voice(QUESTION)
    at = DUE_S + share * len(answer) / 2 / RATE
    mic = speaker_echo(answer, DUE_S, 0.3, -6, person=question, person_at_s=at, processed=True)
    guard = EchoGuard(GATED)
    guard.add_reference(answer, DUE_S)
    starts = detector_starts(mic, guard)
    assert starts and 0 <= starts[0] - (at + voiced_span(question)[0]) <= 0.3


THANKS = "You said: thank you. You're welcome!"
WELCOME = " ".join(brain.WELCOME)
HELLO = (
    "You said: hello, how are you. I can tell you the time or the date, and I repeat what I "
    "heard. You can interrupt me whenever you like."
)


@pytest.mark.parametrize(
    ("answer_text", "delay_s", "level_db", "seed"),
    [
        (THANKS, 0.15, -10, 3),
        (THANKS, 0.3, -6, 2),
        (THANKS, 0.6, -10, 2),
        (HELLO, 0.15, -20, 1),
        # Before the gate has gains: muted where the microphone's comb is the echo's alone.
        (THANKS, 0.3, -6, 3),
        (THANKS, 0.6, -10, 4),
        (HELLO, 0.15, -6, 1),
        (HELLO, 0.6, -6, 2),
        (HELLO, 0.3, -10, 4),
        (WELCOME, 0.6, -6, 3),
    ],
)
def test_an_echo_the_filter_only_partly_cancels_does_not_start_a_turn(
    answer_text, delay_s, level_db, seed
):
    """A short answer (the demo agent's), its echo processed like a browser's: the linear
    filter proved a lock on it (8 dB over its first 0.3 s) and the gate stood aside, so what
    the filter left opened a turn (bench/load.py --mic processed-echo: 20 of 81 such echoes).
    The gate keeps looking while the filter cancels, and gates the residue once it has its
    gains; before it has them (the residue's envelope is too loose to learn from, the first
    second or two of an answer), it mutes what the microphone heard as the echo alone, to its
    harmonics (the last six cases: turns from the residue on the old gate)."""
    answer = speak(answer_text)
    mic = speaker_echo(answer, DUE_S, delay_s, level_db, processed=True, seed=seed)
    off = EchoGuard(EchoSettings(gate=GateSettings(enabled=False)))
    off.add_reference(answer, DUE_S)
    assert detector_starts(mic, off), "the filter alone lets it through, or this proves nothing"
    guard = EchoGuard(GATED)
    guard.add_reference(answer, DUE_S)
    assert detector_starts(mic, guard) == []


# Chromium's own processed echo, recorded (tests/support/chromium_echo.py): the app of
# tests/browser/test_echo.py, whose echo arrives up to 2.5 s after it was due.
CHROMIUM = {"max_delay_s": chromium_echo.MAX_DELAY_S}
ALONE = [case.name for case in chromium_echo.CASES if case.voice is None]
# A short first word ("Wait,") 6 dB under the echo and under Chromium's noise suppression of a
# noisy room: its blocks keep the echo's comb (0.5-0.9) and the envelope explains them; the
# person is heard on their next words, 0.7 s after the first. A limit, shown as it is.
LOST_FIRST_WORD = {"noise_piper_6db"}
PERSON = [
    pytest.param(case.name, marks=pytest.mark.xfail(strict=True, reason="first word lost"))
    if case.name in LOST_FIRST_WORD
    else case.name
    for case in chromium_echo.CASES
    if case.voice is not None
]


def chromium_starts(name: str, gate: GateSettings) -> tuple[list[float], float | None]:
    recording = chromium_echo.load(name)
    guard = EchoGuard(EchoSettings(**CHROMIUM, gate=gate))
    return chromium_echo.replay(recording, guard, TurnDetector()), recording.person_s


@pytest.mark.parametrize("name", ALONE)
def test_chromiums_processed_echo_never_starts_a_turn(name):
    """The linear canceller alone opens a turn 0.3 s into this echo; the gate keeps it out
    (its delay wobbles 10-30 ms from window to window: five blocks once looked like a person
    when the comb's offset followed every wobble). Another answer, Chromium's canceller off,
    and a noisy room too."""
    assert chromium_starts(name, GateSettings(enabled=False))[0], "the test cannot fail"
    assert chromium_starts(name, GATED.gate)[0] == []


@pytest.mark.parametrize("name", [case.name for case in chromium_echo.CASES])
def test_chromiums_echo_alone_stays_short_of_a_person(name):
    """The margin: on the echo alone (before the person speaks, where one does) the gate never
    sees as many non-matching blocks in a row as it takes for a person (at most 2 of 3 in
    the 15 recordings, and in 8 more recorded the same way and not kept)."""
    margins = chromium_echo.Margins(name)
    assert margins.echo_starts == []
    assert margins.echo_run < PERSON_COMBS


@pytest.mark.parametrize("name", PERSON)
def test_a_person_over_chromiums_processed_echo_starts_a_turn_within_300ms(name):
    """A person over Chromium's echo, in another voice (Piper) or the agent's own (espeak),
    3 dB under it or 6: their harmonics are not the echo's, so the gate lets them through
    within a few blocks. With the envelope alone they were heard 0.8-0.9 s late in 3 of 5
    recordings; 6 dB under, where their blocks keep half the echo's comb, 1 s late until a
    weak match the envelope does not explain counted against the echo too (`COMB_WEAK`)."""
    starts, person_s = chromium_starts(name, GATED.gate)
    assert starts and 0 <= starts[0] - person_s <= 0.3, (starts, person_s)


def test_a_comb_survives_band_gains_and_tells_another_pitch():
    """What the gate leans on (echo_fine.py): a voice's harmonics scaled band by band, as a
    browser's suppressor and gain control do, keep their comb; another pitch has another."""
    t = np.arange(640) / RATE

    def voice(f0: float) -> np.ndarray:
        return sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 20) if k * f0 < 3800)

    spectrum = np.fft.rfft(voice(140.0) * 3000)
    gains = np.repeat(10 ** (np.random.default_rng(1).uniform(-12, 0, 16) / 20), 21)[:321]
    processed = np.fft.irfft(spectrum * gains, 640)
    played, echo = comb(voice(140.0) * 3000), comb(processed)
    assert played @ echo > 0.7
    assert played @ comb(voice(190.0) * 3000) < 0.35
    assert not comb(np.zeros(640)).any()  # silence: no comb, nothing to compare
    hiss = comb(np.random.default_rng(2).normal(0, 30, 640))
    assert abs(hiss @ played) < 0.35  # a random comb: it matches nothing
