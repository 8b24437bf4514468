"""Talking to the demo agent in real Chromium: the page, the embedded pipeline, real speech.

The fake microphone plays a spoken question (made with Piper) followed by a long pause, and
Chromium loops it, so the same question comes again after the agent's answer: a second turn.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.browser.conftest import running_app
from tests.conftest import chromium_launch_args
from tests.support.speech import silence, speak, write_wav

pytestmark = pytest.mark.browser


def test_a_spoken_question_is_answered_aloud_twice(playwright, tmp_path, artifacts):
    wav = write_wav(
        tmp_path / "q.wav", silence(1.0) + speak("What time is it?") + silence(9), 16000
    )
    browser = playwright.chromium.launch(**chromium_launch_args(wav=wav))
    sent, received = [], []

    def watch(ws):
        ws.on("framesent", lambda payload: sent.append(json.loads(payload)))
        ws.on("framereceived", lambda payload: received.append(json.loads(payload)))

    try:
        page = browser.new_page()
        page.on("websocket", watch)
        with running_app(data_dir=tmp_path / "data") as url:
            page.goto(url)
            page.wait_for_selector("body[data-state=ready]", state="attached", timeout=60_000)
            page.click("#connect")
            page.wait_for_selector("#status[data-status=connected]", timeout=20_000)

            # The question is heard and shown.
            page.wait_for_selector("#log li.user:not(.interim)", timeout=30_000)
            assert "time" in page.inner_text("#log li.user:not(.interim)")
            # The agent answers aloud: its level rises while the answer plays.
            page.wait_for_selector("#log li.agent >> text=It's", timeout=15_000)
            peak, deadline = 0, time.monotonic() + 6
            while time.monotonic() < deadline and peak <= 10:
                style = page.get_attribute("#agent-level", "style") or "width: 0%"
                peak = max(peak, int(style.split(":")[1].strip(" %;") or 0))
                page.wait_for_timeout(50)
            assert peak > 10, "the agent's voice did not play"
            # The answer played to the end: the server hears so and closes the agent's turn.
            deadline = time.monotonic() + 20
            while not any(m["type"].endswith("replay_finished") for m in sent):
                assert time.monotonic() < deadline, "no replay_finished was sent"
                page.wait_for_timeout(100)
            # The question comes round again (the WAV loops): a second turn, answered too.
            page.wait_for_function(
                "document.querySelectorAll('#log li.user:not(.interim)').length >= 2",
                timeout=30_000,
            )
            page.wait_for_function(
                "document.querySelectorAll('#log li.agent').length >= 3", timeout=15_000
            )  # the welcome (or what was heard of it) and two answers
            page.screenshot(path=artifacts / "voice-conversation.png")
            page.click("#connect")
            page.wait_for_selector("#status[data-status=disconnected]")
    finally:
        browser.close()

    ends = [m for m in received if m["type"] == "turn.end" and m["role"] == "assistant"]
    assert ends, "the server never closed an agent turn after playback"
    transcripts = [m["content"] for m in received if m["type"] == "user.transcript"]
    assert len(transcripts) >= 2 and all("time" in t for t in transcripts[:2])
    assert sum(m["type"] == "response.audio" for m in received) > 10
