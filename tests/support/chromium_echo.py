"""Chromium's real echo, recorded once, replayed in plain pytest (tests/pipeline/test_echo.py).

Chromium's capture path (echo canceller, noise suppressor, gain control: on, as the page asks)
changes the agent's echo in ways no simulation here reproduces well enough to trust, so the
echo defence is measured on what Chromium actually delivered. `record()` runs the page in
Chromium, as tests/browser/test_echo.py does, with a fake microphone that is the agent's
welcome (espeak, exactly as the pipeline sent it) played back, optionally with a person
saying something else over it 3 dB quieter (in Piper's voice, or in espeak's: the agent's
own), and keeps what the session's echo guard was given: every microphone chunk after
resampling, every reference chunk with its due stream time, every "dropped after", and where
the person's voice starts in stream time. `replay()` feeds a recording to a guard in the
same order, so a test sees the stream the live session saw (its echo arrives 1.4-1.5 s after
it was due: the guard needs ECHO_MAX_DELAY_MS 2500, as that test's app has).

Recorded with Chromium 156 (Debian), 8 sessions, about 2 MB:

    .venv/bin/python -m tests.support.chromium_echo   # rewrites tests/fixtures/chromium_echo_*.npz
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


CASES = [  # name, the person's voice (None: echo alone), where they start (share of the echo)
    ("alone_1", None, 0.0),
    ("alone_2", None, 0.0),
    ("alone_3", None, 0.0),
    ("piper_1", "piper", 0.3),
    ("piper_2", "piper", 0.45),
    ("piper_3", "piper", 0.6),
    ("espeak_1", "espeak", 0.3),
    ("espeak_2", "espeak", 0.6),
]


def _level(person: bytes, welcome: bytes) -> np.ndarray:
    """`person` 3 dB quieter than the welcome (rms)."""
    echo = np.frombuffer(welcome, "<i2").astype(np.float64)
    voice = np.frombuffer(person, "<i2").astype(np.float64)
    return voice * np.sqrt((echo**2).mean() / ((voice**2).mean() + 1e-9)) * 10 ** (-3 / 20)


def _with_person(welcome: bytes, person: bytes, share: float) -> bytes:
    """The welcome's echo with `person` over it from `share` of its length, 3 dB quieter."""
    echo = np.frombuffer(welcome, "<i2").astype(np.float64)
    voice = _level(person, welcome)
    at = round(share * echo.size)
    out = np.zeros(max(echo.size, at + voice.size))
    out[: echo.size] += echo
    out[at : at + voice.size] += voice
    return np.clip(np.rint(out), -32768, 32767).astype("<i2").tobytes()


def person_onset_s(mic: np.ndarray, welcome: bytes, person: bytes, share: float) -> float:
    """Stream time of the person's first voiced 10 ms: where the WAV put it, moved by the
    WAV-to-stream offset seen at the echo's first voiced 10 ms (to about 10 ms)."""
    from tests.browser.test_echo import ECHO_AT_S
    from tests.support.speech import voiced_span

    voice = np.clip(np.rint(_level(person, welcome)), -32768, 32767).astype("<i2").tobytes()
    echo_in_wav = ECHO_AT_S + voiced_span(welcome)[0]
    echo_in_stream = voiced_span(mic.astype("<i2").tobytes())[0]
    in_wav = ECHO_AT_S + round(share * len(welcome) / 2) / 16000 + voiced_span(voice)[0]
    return in_wav + echo_in_stream - echo_in_wav


def record(tmp: Path) -> None:
    """Record CASES into FIXTURES, each a fresh app and a fresh Chromium."""
    from playwright.sync_api import sync_playwright

    import tests.browser.test_echo as browser_echo
    from tests.support.speech import speak

    voices = {"piper": speak(PERSON), "espeak": _espeak_in_a_child(PERSON)}
    original_capture, original_wait = (
        browser_echo.captured_welcome,
        browser_echo.wait_for_welcome_end,
    )

    def wait(page, received):
        original_wait(page, received)
        page.wait_for_timeout(4000)  # the echo's tail, heard after the welcome was sent

    for name, voice, share in CASES:
        welcomes = []

        def captured(url, voice=voice, share=share, welcomes=welcomes):
            welcomes.append(original_capture(url))
            return welcomes[0] if voice is None else _with_person(welcomes[0], voices[voice], share)

        browser_echo.captured_welcome, browser_echo.wait_for_welcome_end = captured, wait
        try:
            with sync_playwright() as playwright, recording_guards() as made:
                (tmp / name).mkdir(parents=True, exist_ok=True)
                received = browser_echo.run_session(playwright, tmp / name, echo_gate=True)
        finally:
            browser_echo.captured_welcome = original_capture
            browser_echo.wait_for_welcome_end = original_wait
        session = max(made, key=lambda r: r.mic.size)  # the page's (the capture sends no audio)
        if voice is not None:
            session.person_s = person_onset_s(session.mic, welcomes[0], voices[voice], share)
        session.save(FIXTURES / f"chromium_echo_{name}.npz")
        outcome = browser_echo.welcome_outcome(received)
        print(f"{name}: {session.mic.size / 16000:.1f} s of microphone, welcome {outcome}")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        record(Path(tmp))
