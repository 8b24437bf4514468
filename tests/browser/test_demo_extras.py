"""The demo page shows what the client has beyond the JS SDK: a speaker picker filled with
Chromium's fake outputs, each answer's measured latency under it, and recording with a visible
state and a download. Each test runs on both interpreters."""

from __future__ import annotations

import pytest

from tests.browser.test_client import (  # noqa: F401 (fixtures)
    mic_browser,
    open_and_connect,
    page,
    pipeline,
    send_audio,
    spoken_wav,
    tone,
)

pytestmark = pytest.mark.browser


def test_the_demo_page_picks_a_speaker_shows_latency_and_records(page, pipeline):  # noqa: F811
    open_and_connect(page, pipeline)
    page.wait_for_function(
        "[...document.querySelectorAll('#output option')].some(o => o.textContent.includes('Fake'))"
    )
    options = page.eval_on_selector_all(
        "#output option", "os => os.map(o => [o.value, o.textContent])"
    )
    chosen = next(value for value, label in options if label == "Fake Audio Output 1")
    page.select_option("#output", chosen)
    page.wait_for_function(
        f"window.__media.contexts.some(c => c.state !== 'closed' && c.sinkId === '{chosen}')"
    )
    # Record while the user speaks and the agent answers; the answer shows its latency.
    page.click("#record")
    page.wait_for_selector("#record[aria-pressed=true]")
    assert page.inner_text("#record") == "Stop recording"
    pipeline.wait_for(page, "client.audio", count=len(pipeline.messages("client.audio")) + 5)
    pipeline.send({"type": "turn.start", "role": "user", "turn_id": "u1"})
    pipeline.send({"type": "turn.end", "role": "user", "turn_id": "u1"})
    pipeline.send({"type": "response.text", "content": "Hello there.", "turn_id": "a1"})
    send_audio(pipeline, tone(0.5), "a1")
    pipeline.send({"type": "response.end", "turn_id": "a1", "timings": {"voice_to_voice_ms": 800}})
    page.wait_for_selector("#log li[data-key=agent-a1] .latency")
    latency = page.inner_text("#log li[data-key=agent-a1] .latency")
    assert latency.startswith("answered in ") and latency.endswith(" ms, server 800 ms"), latency
    page.click("#record")
    page.wait_for_selector("#record[aria-pressed=false]")
    page.wait_for_selector("#download:not([hidden])")
    href = page.get_attribute("#download", "href")
    assert href.startswith("blob:")
    size = page.evaluate(f"fetch('{href}').then(r => r.arrayBuffer()).then(b => b.byteLength)")
    assert size > 44 + 16000 * 4 // 2  # more than half a second of stereo
    assert page.get_attribute("#status", "data-status") == "connected"
