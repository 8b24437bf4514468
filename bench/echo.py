"""Echo benchmark: does the agent's own voice, coming back through the microphone, interrupt it?

A microphone that hears the speakers (tests/support/echo.py): the agent's answers (real Piper
speech) delayed, attenuated, with hiss, run through the real TurnDetector with the echo guard
(server/pipeline/echo.py) in front of it and, side by side, without it. Figures, all in stream
time (audio samples), no wall clock except the CPU cost:

- turn starts per minute of agent speech with only the echo at the microphone (goal 0), for
  50/150/300 ms × -6/-20 dB (the issue's matrix), plus a late browser (900 ms), an 8 kHz
  microphone, a reverberant room, a playback stall and an echo through a browser's capture
  processing (harder cases, shown as they are): without the guard, with the guard but its
  gate off (`ECHO_GATE=false`), with the gate of before (envelope only, `combs=False`), and
  with the gate as it is (envelope and harmonics, echo_fine.py: the default);
- barge-in delay: a person (a different sentence, in espeak's voice by default, unlike the
  agent's Piper voice; `--person piper` for the agent's own) talking over the answer at four
  points of each answer, from the person's first voiced 10 ms to the detector's start in
  stream time at the moment the guard let the detector decide (goal ≤ 300 ms), with the gate
  off, as before and as it is, against the same person on a silent microphone without the
  guard (the floor the VAD sets);
- CPU per 100 ms of microphone audio while agent audio is recent, and when none is.

    ./dev bench echo [--person espeak|piper]
"""

from __future__ import annotations

import argparse
import time
from typing import ClassVar

from common import median, print_table, save

from server.pipeline.echo import EchoGuard, EchoSettings
from server.pipeline.echo_gate import GateSettings
from tests.support.echo import RATE, microphone, turn_starts
from tests.support.speech import speak, speak_espeak, voiced_span

ANSWERS = [
    "Sure. The museum opens at nine in the morning and closes at six in the evening. "
    "Tickets cost twelve dollars for adults, and children under five go in for free. "
    "On Sundays there is a guided tour of the modern art wing at eleven.",
    "The weather tomorrow looks mild, with a high of eighteen degrees and light wind from the "
    "west. Rain is likely in the late afternoon, so bring an umbrella if you are out after "
    "four. The weekend should be dry and sunny.",
    "I have booked a table for two at seven thirty tonight. The restaurant is on the corner of "
    "Main Street and Fifth Avenue, and they asked me to mention that parking is limited. "
    "Would you like me to send the address to your phone?",
]
QUESTION = "Wait, can you tell me about parking instead?"
DUE_S = 0.5
PERSON_POINTS = (0.2, 0.4, 0.6, 0.8)  # where the person starts, as a share of the answer

CONDITIONS = [
    ("50 ms, -6 dB", {"delay_s": 0.05, "level_db": -6}),
    ("50 ms, -20 dB", {"delay_s": 0.05, "level_db": -20}),
    ("150 ms, -6 dB", {"delay_s": 0.15, "level_db": -6}),
    ("150 ms, -20 dB", {"delay_s": 0.15, "level_db": -20}),
    ("300 ms, -6 dB", {"delay_s": 0.3, "level_db": -6}),
    ("300 ms, -20 dB", {"delay_s": 0.3, "level_db": -20}),
    ("900 ms, -6 dB", {"delay_s": 0.9, "level_db": -6}),
    ("300 ms, -6 dB, 8 kHz mic", {"delay_s": 0.3, "level_db": -6, "rate": 8000}),
    ("300 ms, -20 dB, room rt60 0.3 s", {"delay_s": 0.3, "level_db": -20, "rt60_s": 0.3}),
    ("300 ms, -6 dB, room rt60 0.3 s", {"delay_s": 0.3, "level_db": -6, "rt60_s": 0.3}),
    ("150 ms, -6 dB, stall +250 ms", {"delay_s": 0.15, "level_db": -6, "jump": (6.0, 0.25)}),
    # Through a browser's echo canceller, noise suppressor and gain control (capture_processing):
    # the linear filter leaves too much, the envelope gate (echo_gate.py) takes the rest.
    ("300 ms, -6 dB, browser-processed", {"delay_s": 0.3, "level_db": -6, "processed": True}),
    ("900 ms, -20 dB, browser-processed", {"delay_s": 0.9, "level_db": -20, "processed": True}),
]
REQUIRED = CONDITIONS[:6]


class TimedGuard(EchoGuard):
    """The guard, with the CPU time of `clean()` added up."""

    cpu_s = 0.0
    locked_at: ClassVar[list[float]] = []  # stream seconds of each first lock

    def _lock(self, *args) -> None:
        if self.delay is None:
            TimedGuard.locked_at.append(self.position / RATE)
        super()._lock(*args)

    def clean(self, mic_pcm16: bytes) -> bytes:
        start = time.process_time()
        try:
            return super().clean(mic_pcm16)
        finally:
            TimedGuard.cpu_s += time.process_time() - start


GATES = {  # the guard's second line: none, the envelope gate alone (before), with combs (now)
    "off": GateSettings(enabled=False),
    "envelope": GateSettings(enabled=True, combs=False),
    "combs": GateSettings(enabled=True),
}


def guard_for(answer: bytes, gate: str = "combs") -> TimedGuard:
    guard = TimedGuard(EchoSettings(gate=GATES[gate]))
    guard.add_reference(answer, DUE_S)
    return guard


def echo_only(answers: list[bytes], options: dict) -> dict:
    """Turn starts with the echo alone, off and on; and how long the guard needed to lock,
    from the first audible echo (each answer starts a fresh guard: a session's first answer)."""
    off = on = no_gate = envelope = 0
    speech_s = 0.0
    lock_ms = []
    for answer in answers:
        mic = microphone(answer, DUE_S, **options)
        speech_s += len(answer) / 2 / RATE
        off += len(turn_starts(mic, None))
        no_gate += len(turn_starts(mic, guard_for(answer, "off")))
        envelope += len(turn_starts(mic, guard_for(answer, "envelope")))
        TimedGuard.locked_at = []
        on += len(turn_starts(mic, guard_for(answer)))
        echo_starts = DUE_S + options["delay_s"] + voiced_span(answer)[0]
        lock_ms += [round((t - echo_starts) * 1000) for t in TimedGuard.locked_at[:1]]
    minutes = speech_s / 60
    return {
        "lock_ms": lock_ms,
        "speech_s": round(speech_s, 1),
        "starts_off": off,
        "starts_gate_off": no_gate,
        "starts_envelope": envelope,
        "starts_on": on,
        "per_min_off": round(off / minutes, 1),
        "per_min_gate_off": round(no_gate / minutes, 1),
        "per_min_envelope": round(envelope / minutes, 1),
        "per_min_on": round(on / minutes, 1),
    }


def barge_in(
    answers: list[bytes], question: bytes, options: dict | None, gate: str = "combs"
) -> dict:
    """Milliseconds from the person's voice to the detector's start; None when missed (>1 s)
    or when a start came before the person spoke (the echo interrupted first)."""
    onset = voiced_span(question)[0]
    delays: list[float | None] = []
    for answer in answers:
        for share in PERSON_POINTS:
            at = DUE_S + share * len(answer) / 2 / RATE
            voice_s = at + onset
            if options is None:  # the floor: the person alone, no echo, no guard
                mic = microphone(answer, DUE_S, 0.1, -200, person=question, person_at_s=at)
                starts = turn_starts(mic, None)
            else:
                mic = microphone(answer, DUE_S, person=question, person_at_s=at, **options)
                starts = turn_starts(mic, guard_for(answer, gate))
            first = starts[0] - voice_s if starts else None
            ok = first is not None and 0 <= first <= 1.0
            delays.append(round(first * 1000) if ok else None)
    heard = [d for d in delays if d is not None]
    return {
        "delays_ms": delays,
        "missed": delays.count(None),
        "median_ms": median(heard),
        "max_ms": max(heard, default=float("nan")),
    }


def cpu_cost(answers: list[bytes]) -> dict:
    TimedGuard.cpu_s = 0.0
    audio_s = 0.0
    for answer in answers:
        mic = microphone(answer, DUE_S, 0.3, -6)
        guard_for(answer).clean(mic)
        audio_s += len(mic) / 2 / RATE
    active = TimedGuard.cpu_s / audio_s * 100  # ms per 100 ms (s per s × 1000 / 10)
    TimedGuard.cpu_s = 0.0
    idle = TimedGuard()
    for answer in answers:
        idle.clean(microphone(answer, DUE_S, 0.3, -200))
    passthrough = TimedGuard.cpu_s / audio_s * 100
    return {"active_ms_per_100ms": round(active, 3), "idle_ms_per_100ms": round(passthrough, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--person", choices=("espeak", "piper"), default="espeak")
    args = parser.parse_args()
    answers = [speak(text) for text in ANSWERS]
    question = speak_espeak(QUESTION) if args.person == "espeak" else speak(QUESTION)
    echo_rows, echo_data = [], {}
    for name, options in CONDITIONS:
        result = echo_only(answers, options)
        echo_data[name] = result
        echo_rows.append(
            [
                name,
                f"{result['speech_s']:.0f}",
                result["starts_off"],
                result["starts_gate_off"],
                result["starts_envelope"],
                result["starts_on"],
                f"{result['per_min_off']:.1f}",
                f"{result['per_min_gate_off']:.1f}",
                f"{result['per_min_envelope']:.1f}",
                f"{result['per_min_on']:.1f}",
                "/".join(str(ms) for ms in result["lock_ms"]),
            ]
        )
    print_table(
        "Echo only at the microphone: user turn starts (interruptions) over the agent's speech",
        [
            "condition",
            "speech s",
            "starts off",
            "gate off",
            "envelope gate",
            "gate on",
            "/min off",
            "/min gate off",
            "/min envelope",
            "/min gate on",
            "lock ms",
        ],
        echo_rows,
    )
    barge_rows, barge_data = [], {}
    for name, options in [("no echo, no guard (floor)", None), *CONDITIONS]:
        results = {
            gate: barge_in(answers, question, options, gate)
            for gate in (("combs",) if options is None else GATES)
        }
        barge_data[name] = results
        row = [name]
        for gate in GATES:
            result = results.get(gate)
            if result is None:
                row += ["", "", ""]
                continue
            heard = len(result["delays_ms"]) - result["missed"]
            row += [
                f"{result['median_ms']:.0f}",
                f"{result['max_ms']:.0f}",
                f"{heard}/{len(result['delays_ms'])}",
            ]
        barge_rows.append(row)
    print_table(
        f"Barge-in: a person ({args.person}) over the agent, person's first voice → turn start "
        "(stream ms), the guard's gate off | envelope only (before) | with combs (now)",
        [
            "condition",
            "off median",
            "off max",
            "off heard",
            "env median",
            "env max",
            "env heard",
            "on median",
            "on max",
            "on heard",
        ],
        barge_rows,
    )
    cpu = cpu_cost(answers)
    print(
        f"\nCPU: {cpu['active_ms_per_100ms']:.2f} ms per 100 ms of microphone audio while agent "
        f"audio is recent, {cpu['idle_ms_per_100ms']:.3f} ms when none is (shared 2-core machine)"
    )
    required = [name for name, _ in REQUIRED]
    save(
        "echo",
        {
            "person": args.person,
            "echo_only": echo_data,
            "barge_in": barge_data,
            "cpu": cpu,
            "required": required,
        },
    )


if __name__ == "__main__":
    main()
