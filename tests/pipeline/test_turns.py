"""Turn detection on real speech made with Piper."""

from __future__ import annotations

import numpy as np

from server.pipeline.turns import (
    SpeechAudio,
    SpeechEnded,
    SpeechStarted,
    TurnDetector,
    TurnSettings,
)
from tests.support.speech import silence, speak, voiced_span

RATE = 16000


def seconds(pcm: bytes) -> float:
    return len(pcm) / 2 / RATE


def run(pcm: bytes, chunk: int = 3200, settings: TurnSettings | None = None) -> list:
    detector = TurnDetector(settings)
    events = []
    for offset in range(0, len(pcm), chunk):
        events += detector.feed(pcm[offset : offset + chunk])
    return events


def test_finds_one_utterance_with_its_edges():
    speech = speak("Can you help me book a table for two?")
    pcm = silence(1.0) + speech + silence(1.5)
    true_start, true_end = voiced_span(pcm)
    events = run(pcm)
    kinds = [type(e) for e in events if not isinstance(e, SpeechAudio)]
    assert kinds == [SpeechStarted, SpeechEnded]
    started = next(e for e in events if isinstance(e, SpeechStarted))
    ended = next(e for e in events if isinstance(e, SpeechEnded))
    assert abs(started.start_s - true_start) < 0.15
    assert abs(ended.speech_end_s - true_end) < 0.15
    # Pre-roll plus speech audio is every byte from before the start to the end, once.
    heard = started.preroll + b"".join(e.pcm for e in events if isinstance(e, SpeechAudio))
    assert seconds(heard) >= true_end - true_start
    assert seconds(started.preroll) >= 0.3


def test_silence_and_quiet_noise_never_start_a_turn():
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 60, RATE * 3).astype("<i2").tobytes()
    hum = (np.sin(2 * np.pi * 50 * np.arange(RATE * 3) / RATE) * 80).astype("<i2").tobytes()
    for pcm in (silence(3.0), noise, hum):
        assert run(pcm) == []


def test_two_utterances_apart_are_two_turns():
    pcm = silence(0.5) + speak("What time is it?") + silence(1.0) + speak("Thank you.")
    events = run(pcm + silence(1.0))
    assert [type(e) for e in events if not isinstance(e, SpeechAudio)] == [
        SpeechStarted,
        SpeechEnded,
        SpeechStarted,
        SpeechEnded,
    ]


def merged(events: list) -> list:
    """Consecutive SpeechAudio joined: how audio is cut into events follows the input chunks."""
    out: list = []
    for event in events:
        if isinstance(event, SpeechAudio) and out and isinstance(out[-1], SpeechAudio):
            out[-1] = SpeechAudio(out[-1].pcm + event.pcm)
        else:
            out.append(event)
    return out


def test_chunk_size_does_not_change_the_result():
    pcm = silence(0.4) + speak("Hello, how are you?") + silence(1.0)
    reference = merged(run(pcm, chunk=3200))
    for chunk in (2, 322, 1001, 16000):
        assert merged(run(pcm, chunk=chunk)) == reference


def test_endpointing_wait_follows_the_setting_and_force_end_ends_now():
    speech = silence(0.3) + speak("What time is it?")
    for wait_ms in (300, 500):
        detector = TurnDetector(TurnSettings(end_silence_ms=wait_ms))
        pcm, ended_at, ended = speech + silence(1.0), None, None
        for offset in range(0, len(pcm), 640):  # 20 ms at a time
            for event in detector.feed(pcm[offset : offset + 640]):
                if isinstance(event, SpeechEnded):
                    ended, ended_at = event, (offset + 640) / 2 / RATE
        assert ended is not None
        assert abs((ended_at - ended.speech_end_s) - wait_ms / 1000) <= 0.041

    detector = TurnDetector()
    detector.feed(speech)
    (ended,) = detector.force_end()
    assert not detector.in_speech and ended.speech_end_s > 0.5
    assert detector.force_end() == []
