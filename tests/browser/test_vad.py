"""Client-side VAD in real Chromium: the microphone gated by speech, with `vad_events`.

The fake microphone loops a WAV of 1 s of silence, a spoken sentence and 2 s of silence; the
scripted pipeline answers with a `config.vad` that turns the client's VAD on, as Layercode's
cloud does (this project's own pipeline turns it off). Both interpreters of the page.
"""

from __future__ import annotations

import base64
import json

import pytest

from tests.browser import test_client as client_tests
from tests.browser.test_client import SPOKEN, envelope_alignment, open_and_connect
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


# Keeps every chunk the recorder worklet posts (its `client.audio` message, or its base64 audio
# on a port that does not frame): what the client was given, to compare with what it sent.
MICROPHONE_TAP = """
window.__microphoneChunks = [];
const Recorder = window.AudioWorkletNode;
window.AudioWorkletNode = class extends Recorder {
  constructor(context, name, options) {
    super(context, name, options);
    if (name !== "layercode-recorder") return;
    this.port.addEventListener("message", (event) => {
      const chunk = event.data.frame ?? event.data.audio;
      if (chunk !== undefined) window.__microphoneChunks.push(String(chunk));
    });
  }
};
"""


def microphone_chunks(page) -> list[str]:
    """The base64 audio of each chunk the microphone gave the client so far, in order."""
    chunks = page.evaluate("window.__microphoneChunks")
    return [json.loads(c)["content"] if c.startswith("{") else c for c in chunks]


def is_run_of(part: list[str], whole: list[str]) -> bool:
    """Whether `part` is `whole`'s items k, k+1, … for some k: in order, none lost or added."""
    return any(whole[k : k + len(part)] == part for k in range(len(whole) - len(part) + 1))


def test_speech_opens_the_gate_with_vad_events_and_silence_closes_it(page, pipeline, spoken_wav):
    """The gate sends exactly the microphone's chunks, pre-roll first, in order.

    What the microphone gives is compared with what was sent, not with the WAV sample by
    sample: under CPU load Chromium's capture drops or repeats a 10 ms buffer now and then
    (before the worklet sees it), which shifts the audio against the file and broke a
    sample-exact comparison without anything of ours at fault.
    """
    pipeline.vad = {"enabled": True, "gate_audio": True, "buffer_frames": 3}
    page.add_init_script(MICROPHONE_TAP)
    open_and_connect(page, pipeline)
    # start, end, and the next start: one whole pass of the loop, wherever it began.
    pipeline.wait_for(page, "vad_events", count=3, timeout_s=30)
    sent = [r.message for r in pipeline.received]
    events = [i for i, m in enumerate(sent) if m["type"] == "vad_events"]
    assert [sent[i]["event"] for i in events] == ["vad_start", "vad_end", "vad_start"]
    first, end, second = events
    assert not [m for m in sent[:first] if m["type"] == "client.audio"]  # the loop's 1 s silence
    assert not [m for m in sent[end:second] if m["type"] == "client.audio"]  # silence held back
    speech = [m["content"] for m in sent[first:end] if m["type"] == "client.audio"]
    assert is_run_of(speech, microphone_chunks(page))
    heard = b"".join(base64.b64decode(content) for content in speech)
    spoken_s = len(spoken_wav[0]) / 2 / 16000
    assert spoken_s <= len(heard) / 2 / 16000 <= spoken_s + 1.5  # speech, pre-roll, hangover
    correlation, speech_at_s = envelope_alignment(heard, spoken_wav[0], 16000)
    assert correlation > 0.8  # the sentence, …
    assert speech_at_s >= 0.03  # … from its first sound, after a little pre-roll
    page.wait_for_selector("#user-meter[data-speaking=true]", state="attached", timeout=10_000)
