"""The official `@layercode/js-sdk` talks to the embedded pipeline as it would to Layercode.

It ignores `websocket_url` (pointed here by hand, as a deployment would proxy it), sends
`client.ready`, and always streams 8 kHz audio, which the pipeline resamples. Its client-side
VAD stays off: the pipeline's `config.vad` says `enabled: false` (it detects turns itself).
"""

from __future__ import annotations

import json

import pytest

from server.app import create_app
from server.config import Settings
from tests.conftest import chromium_launch_args
from tests.support.official_sdk import with_official_sdk
from tests.support.servers import serve
from tests.support.speech import silence, speak, write_wav

pytestmark = pytest.mark.browser


def test_the_official_sdk_holds_a_voice_turn_with_the_embedded_pipeline(playwright, tmp_path):
    question = silence(1.0) + speak("Thank you very much.") + silence(8)
    wav = write_wav(tmp_path / "q.wav", question, 16000)
    browser = playwright.chromium.launch(**chromium_launch_args(wav=wav))
    sent = []
    try:
        page = browser.new_page()
        page.on(
            "websocket",
            lambda ws: ws.on("framesent", lambda payload: sent.append(json.loads(payload))),
        )
        app = with_official_sdk(create_app(Settings(data_dir=tmp_path / "data")))
        with serve(app) as url:
            page.goto(url + "/official.html")
            page.wait_for_selector("body[data-status=connected]", state="attached", timeout=20_000)
            # The agent's answer reaches the SDK's callbacks: transcript, text, data.
            page.wait_for_function("window.seen.data.length >= 1", timeout=40_000)
            seen = page.evaluate("window.seen")
    finally:
        browser.close()

    kinds = {m["type"] for m in sent}
    assert "client.ready" in kinds and "client.audio" in kinds
    transcripts = [m for m in seen["messages"] if m.get("type") == "user.transcript"]
    assert transcripts and transcripts[0]["content"].split()
    assert seen["data"][0]["content"]["heard"] == transcripts[0]["content"]
    assert any(m.get("type") == "response.text" for m in seen["messages"])
