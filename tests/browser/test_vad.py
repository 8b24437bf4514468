"""Client-side VAD in real Chromium: the microphone gated by speech, with `vad_events`.

The fake microphone loops a WAV of 1 s of silence, a spoken sentence and 2 s of silence; the
scripted pipeline answers with a `config.vad` that turns the client's VAD on, as Layercode's
cloud does (this project's own pipeline turns it off). Both interpreters of the page.
"""

from __future__ import annotations

import base64

import pytest

from tests.browser import test_client as client_tests
from tests.browser.test_client import SPOKEN, best_correlation, open_and_connect
from tests.conftest import chromium_launch_args
from tests.support.speech import silence, speak, write_wav

pytestmark = pytest.mark.browser

# The page on each interpreter, against the scripted pipeline (test_client.py's fixtures), with
# this module's microphone.
pipeline = client_tests.pipeline
page = client_tests.page


@pytest.fixture(scope="module")
def spoken_wav(tmp_path_factory) -> tuple[bytes, object]:
    speech = speak(SPOKEN)
    pcm = silence(1.0) + speech + silence(2.0)
    return speech, write_wav(tmp_path_factory.mktemp("vad") / "pauses.wav", pcm, 16000)


@pytest.fixture(scope="module")
def mic_browser(playwright, spoken_wav):
    browser = playwright.chromium.launch(**chromium_launch_args(wav=spoken_wav[1]))
    yield browser
    browser.close()


@pytest.mark.xfail(
    strict=False,
    reason="under CI load the gated audio's sample-exact correlation fell to 0.44 (Pyodide) and "
    "0.10 (MicroPython) in 2 of 3 runs since the framed microphone chunks; passes quiet: "
    "open defect, under investigation (closing note of 2026-11-30)",
)
def test_speech_opens_the_gate_with_vad_events_and_silence_closes_it(page, pipeline, spoken_wav):
    pipeline.vad = {"enabled": True, "gate_audio": True, "buffer_frames": 3}
    open_and_connect(page, pipeline)
    # start, end, and the next start: one whole pass of the loop, wherever it began.
    pipeline.wait_for(page, "vad_events", count=3, timeout_s=30)
    sent = [r.message for r in pipeline.received]
    events = [i for i, m in enumerate(sent) if m["type"] == "vad_events"]
    assert [sent[i]["event"] for i in events] == ["vad_start", "vad_end", "vad_start"]
    first, end, second = events
    assert not [m for m in sent[:first] if m["type"] == "client.audio"]  # the loop's 1 s silence
    assert not [m for m in sent[end:second] if m["type"] == "client.audio"]  # silence held back
    speech = [m for m in sent[first:end] if m["type"] == "client.audio"]
    heard = b"".join(base64.b64decode(m["content"]) for m in speech)
    spoken_s = len(spoken_wav[0]) / 2 / 16000
    assert spoken_s <= len(heard) / 2 / 16000 <= spoken_s + 1.5  # speech, pre-roll, hangover
    assert best_correlation(heard, spoken_wav[0][: 16000 * 2 * 2]) > 0.6
    page.wait_for_selector("#user-meter[data-speaking=true]", state="attached", timeout=10_000)
