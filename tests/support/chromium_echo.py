"""Chromium's real echo, recorded once, replayed in plain pytest (tests/pipeline/test_echo.py).

Chromium's capture path (echo canceller, noise suppressor, gain control: on, as the page asks)
changes the agent's echo in ways no simulation here reproduces well enough to trust, so the
echo defence is measured on what Chromium actually delivered. `record()` runs the page in
Chromium, as tests/browser/test_echo.py does, with a fake microphone that is the agent's
welcome (espeak, exactly as the pipeline sent it; or another answer, `Case.answer`) played
back, optionally with a person saying something else over it 3 or 6 dB quieter (in Piper's
voice, or in espeak's: the agent's own), in a noisy room or not, with Chromium's capture
processing as the page asks for it or partly off (`Case.constraints`), and keeps what the
session's echo guard was given: every microphone chunk after resampling, every reference
chunk with its due stream time, every "dropped after", and where the person's voice starts in
stream time. `replay()` feeds a recording to a guard in the same order, so a test sees the
stream the live session saw (its echo arrives 1.4-1.5 s after it was due: the guard needs
ECHO_MAX_DELAY_MS 2500, as that test's app has). `Margins` replays one and measures what the
gate's margin is: the longest run of non-matching blocks on the echo alone, and when the
person was heard.

Recorded with Chromium 156 (Debian), 15 sessions, about 4.3 MB (CASES):

    .venv/bin/python -m tests.support.chromium_echo [NAME ...]  # rewrites tests/fixtures/...
    .venv/bin/python -m tests.support.chromium_echo summary      # the table of margins
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
PERSON = "Wait, can you tell me about parking instead?"
PERSON_SHARE = 0.45  # where in the welcome's echo the person starts (share of its length)


class Recording:
    """What one session's echo guard was given, in order (16 kHz PCM16, stream samples)."""

    def __init__(self, mic: np.ndarray, events: list[tuple], person_s: float | None = None):
        self.mic = mic  # int16, every sample the guard was fed
        self.events = events  # ("ref", at_sample, due_s, pcm) | ("drop", at_sample, stream_s)
        self.person_s = person_s  # stream time of the person's first voiced 10 ms, if any

    def save(self, path: Path) -> None:
        refs = [e for e in self.events if e[0] == "ref"]
        drops = [e for e in self.events if e[0] == "drop"]
        np.savez_compressed(
            path,
            mic=self.mic,
            ref_pcm=np.concatenate([np.frombuffer(e[3], "<i2") for e in refs] or [[]]).astype(
                "<i2"
            ),
            ref_meta=np.array([[e[1], e[2], len(e[3]) // 2] for e in refs], dtype=np.float64),
            drops=np.array([[e[1], e[2]] for e in drops], dtype=np.float64).reshape(-1, 2),
            person_s=np.array(np.nan if self.person_s is None else self.person_s),
        )

    @classmethod
    def load(cls, path: Path) -> Recording:
        data = np.load(path)
        events: list[tuple] = []
        offset = 0
        for at, due, size in data["ref_meta"]:
            pcm = data["ref_pcm"][offset : offset + int(size)].tobytes()
            events.append(("ref", int(at), float(due), pcm))
            offset += int(size)
        events += [("drop", int(at), float(s)) for at, s in data["drops"]]
        events.sort(key=lambda e: e[1])
        person_s = float(data["person_s"]) if "person_s" in data else float("nan")
        return cls(data["mic"], events, None if np.isnan(person_s) else person_s)


def replay(recording: Recording, guard, detector, frame: int = 320) -> list[float]:
    """Feed the recording through `guard` into `detector`, 20 ms at a time, the reference and
    drops given at the sample they were given live; the stream times of speech starts (output
    samples: what the VAD had heard when it decided)."""
    from server.pipeline.turns import SpeechStarted

    events = list(recording.events)
    pcm = recording.mic.astype("<i2").tobytes()
    out = 0
    starts = []
    for offset in range(0, len(pcm), frame * 2):
        position = offset // 2
        while events and events[0][1] <= position:
            event = events.pop(0)
            if event[0] == "ref":
                guard.add_reference(event[3], event[2])
            else:
                guard.drop_reference_after(event[2])
        cleaned = guard.clean(pcm[offset : offset + frame * 2])
        out += len(cleaned) // 2
        starts += [out / 16000 for e in detector.feed(cleaned) if isinstance(e, SpeechStarted)]
    return starts


def load(name: str) -> Recording:
    return Recording.load(FIXTURES / f"chromium_echo_{name}.npz")


# The app of tests/browser/test_echo.py, whose echo arrives up to 2.5 s after it was due.
MAX_DELAY_S = 2.5


class Margins:
    """One recording replayed through a guard: the longest run of audible blocks whose comb
    did not match the echo's while only the echo was heard (a person needs
    echo_gate.PERSON_COMBS in a row), the turn starts, and when the person was heard."""

    def __init__(self, name: str, gate=None):
        from server.pipeline.echo import EchoGuard, EchoSettings
        from server.pipeline.echo_gate import BLOCK, GateSettings
        from server.pipeline.turns import TurnDetector

        recording = load(name)
        guard = EchoGuard(EchoSettings(max_delay_s=MAX_DELAY_S, gate=gate or GateSettings()))
        runs: list[tuple[int, int]] = []  # (block, non-matching blocks in a row there)
        gate_block = guard.gate.gate

        def watched(block, pcm, audible):
            out = gate_block(block, pcm, audible)
            runs.append((block, guard.gate._contradictions))
            return out

        guard.gate.gate = watched
        self.starts = replay(recording, guard, TurnDetector())
        self.person_s = recording.person_s
        echo_alone = self.person_s if self.person_s is not None else float("inf")
        self.echo_run = max(
            (run for block, run in runs if (block + 1) * BLOCK / 16000 <= echo_alone), default=0
        )
        self.echo_starts = [s for s in self.starts if s < echo_alone]
        heard = [s for s in self.starts if s >= echo_alone]
        self.heard_ms = (heard[0] - self.person_s) * 1000 if heard and self.person_s else None


def summary(names: list[str] | None = None) -> None:
    """The table of every recording (or those named): echo alone, and the person over it."""
    from server.pipeline.echo_gate import PERSON_COMBS

    print(f"Chromium's recorded echo, replayed (a person needs {PERSON_COMBS} in a row)")
    print(f"  {'recording':<20} {'max non-matching run':>20} {'echo starts':>11} "
          f"{'person heard ms':>15}")  # fmt: skip
    for case in CASES:
        if names and case.name not in names:
            continue
        m = Margins(case.name)
        heard = "-" if case.voice is None else (
            "never" if m.heard_ms is None else f"{m.heard_ms:.0f}"
        )  # fmt: skip
        print(f"  {case.name:<20} {m.echo_run:>20} {len(m.echo_starts):>11} {heard:>15}")


@contextlib.contextmanager
def recording_guards() -> Iterator[list[Recording]]:
    """Every EchoGuard made meanwhile records what it is given (a class-level patch: the app
    runs in this process)."""
    from server.pipeline.echo import EchoGuard

    made: list[Recording] = []
    originals = EchoGuard.clean, EchoGuard.add_reference, EchoGuard.drop_reference_after

    def rec(guard) -> Recording:
        if not hasattr(guard, "_recording"):
            guard._recording = Recording(np.zeros(0, "<i2"), [])
            guard._recording_fed = 0
            made.append(guard._recording)
        return guard._recording

    def clean(guard, pcm):
        r = rec(guard)
        r.mic = np.concatenate((r.mic, np.frombuffer(pcm[: len(pcm) // 2 * 2], "<i2")))
        return originals[0](guard, pcm)

    def add_reference(guard, pcm, due):
        rec(guard).events.append(("ref", len(rec(guard).mic), due, bytes(pcm)))
        return originals[1](guard, pcm, due)

    def drop(guard, stream_s):
        rec(guard).events.append(("drop", len(rec(guard).mic), stream_s))
        return originals[2](guard, stream_s)

    EchoGuard.clean, EchoGuard.add_reference, EchoGuard.drop_reference_after = (
        clean,
        add_reference,
        drop,
    )
    try:
        yield made
    finally:
        EchoGuard.clean, EchoGuard.add_reference, EchoGuard.drop_reference_after = originals


def _espeak_in_a_child(text: str) -> bytes:
    """espeak-ng speech made in another process: the library's state is process-wide, and a
    second engine in the app's process silenced the app's own voice."""
    import subprocess
    import sys

    code = (
        "import sys; from tests.support.speech import speak_espeak; "
        f"sys.stdout.buffer.write(speak_espeak({text!r}))"
    )
    root = Path(__file__).resolve().parents[2]
    return subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True).stdout


class Case:
    """One recorded session: what the agent says, what the microphone hears besides its echo,
    and how Chromium processes the capture."""

    def __init__(self, name: str, voice: str | None = None, share: float = 0.0, *,
                 person_db: float = -3.0, answer: list[str] | None = None,
                 constraints: dict | None = None, noise_db: float | None = None):  # fmt: skip
        self.name = name
        self.voice = voice  # the person's: "piper", "espeak" (the agent's own), None: echo alone
        self.share = share  # where in the echo the person starts (share of its length)
        self.person_db = person_db  # the person's level against the echo's (rms)
        self.answer = answer  # the agent's words (sentences), None: the demo agent's welcome
        self.constraints = constraints  # microphone constraints replacing the page's own
        self.noise_db = noise_db  # room noise against the echo's level (rms), None: none


ANOTHER_ANSWER = [
    "I have booked a table for two at seven thirty tonight.",
    "The restaurant is on the corner of Main Street and Fifth Avenue.",
    "Parking is limited, so come a little early.",
]
NO_AEC = {"echoCancellation": False}

CASES = [
    Case("alone_1"),
    Case("alone_2"),
    Case("alone_3"),
    Case("piper_1", "piper", 0.3),
    Case("piper_2", "piper", 0.45),
    Case("piper_3", "piper", 0.6),
    Case("espeak_1", "espeak", 0.3),
    Case("espeak_2", "espeak", 0.6),
    # Recorded later, for the margin: other words, a louder echo (the person 6 dB under it),
    # Chromium's processing turned off in parts, and a noisy room.
    Case("answer2_alone", answer=ANOTHER_ANSWER),
    Case("answer2_piper_6db", "piper", 0.4, person_db=-6.0, answer=ANOTHER_ANSWER),
    Case("piper_6db", "piper", 0.6, person_db=-6.0),
    Case("no_aec_alone", constraints=NO_AEC),
    Case("no_aec_espeak_6db", "espeak", 0.45, person_db=-6.0, constraints=NO_AEC),
    Case("noise_alone", noise_db=-30.0),
    Case("noise_piper_6db", "piper", 0.3, person_db=-6.0, noise_db=-30.0),
]


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt((x**2).mean() + 1e-9))


def _level(person: bytes, welcome: bytes, db: float = -3.0) -> np.ndarray:
    """`person` `db` against the welcome (rms)."""
    echo = np.frombuffer(welcome, "<i2").astype(np.float64)
    voice = np.frombuffer(person, "<i2").astype(np.float64)
    return voice * _rms(echo) / _rms(voice) * 10 ** (db / 20)


def _with_person(welcome: bytes, person: bytes, share: float, db: float = -3.0) -> bytes:
    """The welcome's echo with `person` over it from `share` of its length, `db` under it."""
    echo = np.frombuffer(welcome, "<i2").astype(np.float64)
    voice = _level(person, welcome, db)
    at = round(share * echo.size)
    out = np.zeros(max(echo.size, at + voice.size))
    out[: echo.size] += echo
    out[at : at + voice.size] += voice
    return np.clip(np.rint(out), -32768, 32767).astype("<i2").tobytes()


def room_noise(samples: int, rms: float, seed: int = 11) -> np.ndarray:
    """Pink-ish noise (-3 dB per octave, from 50 Hz): a fan, traffic, a room's hum."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.normal(0, 1, samples))
    freqs = np.fft.rfftfreq(samples, 1 / 16000)
    spectrum /= np.sqrt(np.maximum(freqs, 50.0))
    noise = np.fft.irfft(spectrum, samples)
    return noise * rms / _rms(noise)


def microphone_wav(case: Case, welcome: bytes, voices: dict[str, bytes]) -> bytes:
    """What the fake microphone plays from its echo on (the caller puts silence before it)."""
    pcm = welcome if case.voice is None else _with_person(
        welcome, voices[case.voice], case.share, case.person_db
    )  # fmt: skip
    if case.noise_db is None:
        return pcm
    mic = np.frombuffer(pcm, "<i2").astype(np.float64)
    echo = np.frombuffer(welcome, "<i2").astype(np.float64)
    mic = mic + room_noise(mic.size, _rms(echo) * 10 ** (case.noise_db / 20))
    return np.clip(np.rint(mic), -32768, 32767).astype("<i2").tobytes()


def person_onset_s(
    mic: np.ndarray, welcome: bytes, person: bytes, share: float, db: float = -3.0
) -> float:
    """Stream time of the person's first voiced 10 ms: where the WAV put it, moved by the
    WAV-to-stream offset seen at the echo's first voiced 10 ms (to about 10 ms)."""
    from tests.browser.test_echo import ECHO_AT_S
    from tests.support.speech import voiced_span

    voice = np.clip(np.rint(_level(person, welcome, db)), -32768, 32767).astype("<i2").tobytes()
    echo_in_wav = ECHO_AT_S + voiced_span(welcome)[0]
    echo_in_stream = voiced_span(mic.astype("<i2").tobytes())[0]
    in_wav = ECHO_AT_S + round(share * len(welcome) / 2) / 16000 + voiced_span(voice)[0]
    return in_wav + echo_in_stream - echo_in_wav


def record(tmp: Path, names: list[str] | None = None) -> None:
    """Record CASES (or those named) into FIXTURES, each a fresh app and a fresh Chromium."""
    from playwright.sync_api import sync_playwright

    import server.agent.brain as brain
    import tests.browser.test_echo as browser_echo
    from tests.support.speech import speak

    voices = {"piper": speak(PERSON), "espeak": _espeak_in_a_child(PERSON)}
    original_capture, original_wait = (
        browser_echo.captured_welcome,
        browser_echo.wait_for_welcome_end,
    )
    original_welcome = list(brain.WELCOME)

    def wait(page, received):
        original_wait(page, received)
        page.wait_for_timeout(4000)  # the echo's tail, heard after the welcome was sent

    for case in CASES:
        if names and case.name not in names:
            continue
        welcomes = []

        def captured(url, case=case, welcomes=welcomes):
            welcomes.append(original_capture(url))
            return microphone_wav(case, welcomes[0], voices)

        browser_echo.captured_welcome, browser_echo.wait_for_welcome_end = captured, wait
        brain.WELCOME[:] = case.answer or original_welcome  # the app runs in this process
        try:
            with sync_playwright() as playwright, recording_guards() as made:
                (tmp / case.name).mkdir(parents=True, exist_ok=True)
                received = browser_echo.run_session(
                    playwright, tmp / case.name, constraints=case.constraints, echo_gate=True
                )
        finally:
            browser_echo.captured_welcome = original_capture
            browser_echo.wait_for_welcome_end = original_wait
            brain.WELCOME[:] = original_welcome
        session = max(made, key=lambda r: r.mic.size)  # the page's (the capture sends no audio)
        if case.voice is not None:
            session.person_s = person_onset_s(
                session.mic, welcomes[0], voices[case.voice], case.share, case.person_db
            )
        session.save(FIXTURES / f"chromium_echo_{case.name}.npz")
        outcome = browser_echo.welcome_outcome(received)
        print(f"{case.name}: {session.mic.size / 16000:.1f} s of microphone, welcome {outcome}")


if __name__ == "__main__":
    import sys
    import tempfile

    if sys.argv[1:2] == ["summary"]:
        summary(sys.argv[2:])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            record(Path(tmp), sys.argv[1:])
