"""The client's `@layercode/js-sdk` 2.8.10 surface in real Chromium, against the scripted pipeline.

The page runs the official SDK's documented usage — the option and callback names of its
README and types (`agentId`, `conversationId`, `onConnect({conversationId, config})`,
`onUserIsSpeakingChange`, `onMuteStateChange`, …) — through our Python client, unchanged but
for spelling; the callbacks write to the console, where the test reads them. Each test runs on
both of the page's interpreters (MicroPython and Pyodide).
"""

from __future__ import annotations

import base64
import json
import time

import pytest

from server.vendor import micropython_url, pyodide_url, pyscript_url
from server.wheel import wheel_filename
from tests.browser.conftest import default_chunk_ms
from tests.support.scripted_pipeline import ScriptedPipeline
from tests.support.servers import serve

pytestmark = pytest.mark.browser

# Counts getUserMedia calls and lets the test read whether the microphone's tracks are enabled.
MEDIA_PROBE = """
window.__media = {calls: 0, streams: []};
const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = async (c) => {
  window.__media.calls += 1;
  const s = await gum(c); window.__media.streams.push(s); return s;
};
"""
TRACKS_ENABLED = """() => window.__media.streams.flatMap(s => s.getAudioTracks())
  .filter(t => t.readyState === "live").map(t => t.enabled)"""

SDK_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<script>delete WebAssembly.Suspending; delete WebAssembly.promising;</script>
<script type="module" src="{pyscript}/core.js"></script></head>
<body><script type="{script_type}" config='{config}'>
import js
from pyscript import ffi
from layercode_client import LayercodeClient

def log(*words):
    js.console.log("sdk: " + " ".join(str(w) for w in words))

# The official SDK's documented usage; console.log is `log` here.
client = LayercodeClient({{
    "agentId": "ag_test",
    "conversationId": "conv_7",
    "authorizeSessionEndpoint": "/api/authorize",
    "metadata": {{"userId": "123"}},
    "onConnect": lambda info: log("connected", info["conversationId"], info["config"]),
    "onDisconnect": lambda: log("disconnected"),
    "onError": lambda error: log("error", error),
    "onDataMessage": lambda message: log("data", message["content"]),
    "onMessage": lambda message: log("message", message["type"]),
    "onUserAmplitudeChange": lambda amplitude: log("user amplitude", amplitude),
    "onStatusChange": lambda status: log("status", status),
    "onUserIsSpeakingChange": lambda speaking: log("user speaking", speaking),
    "onAgentSpeakingChange": lambda speaking: log("agent speaking", speaking),
    "onMuteStateChange": lambda muted: log("muted", muted),
    {extra}
}})

def mute_and_mark():
    client.mute()
    client.sendClientResponseText("muted now")

def unmute_and_mark():
    client.unmute()
    client.sendClientResponseText("unmuted now")

ACTIONS = {{
    "mute": mute_and_mark,
    "unmute": unmute_and_mark,
    "text": lambda: client.sendClientResponseText("hello from the keyboard"),
    "data": lambda: client.sendClientResponseData({{"clicked": "buy", "n": 2}}),
    "getters": lambda: log("getters", client.status, client.isMuted, client.conversationId,
                           client.userSpeaking, client.agentSpeaking, client.enableVAD,
                           client.audioInputEnabled),
    "reason": lambda: log("reason", client.disconnect_reason["code"],
                          client.disconnect_reason["reason"]),
    "disconnect": lambda: client.disconnect(),
}}

def act(name):
    ACTIONS[name]()

js.window.act = ffi.create_proxy(act)
client.connect()
</script></body></html>
"""


@pytest.fixture(params=["micropython", "pyodide"])
def pipeline(request):
    scripted = ScriptedPipeline()
    with serve(scripted.app()) as url:
        scripted.url = url
        scripted.interpreter = request.param
        yield scripted


class Console:
    """What the page's callbacks logged, in order."""

    def __init__(self, page):
        self.lines: list[str] = []
        page.on("console", lambda m: m.text.startswith("sdk: ") and self.lines.append(m.text[5:]))
        self.page = page

    def wait_for(self, line: str, timeout_s: float = 30.0, start: int = 0) -> int:
        """Wait until `line` was logged (after index `start`); its index."""
        deadline = time.monotonic() + timeout_s
        while True:
            for index in range(start, len(self.lines)):
                if self.lines[index] == line:
                    return index
            if time.monotonic() > deadline:
                raise TimeoutError(f"{line!r} not logged; got {self.lines[-20:]}")
            self.page.wait_for_timeout(20)

    def without_amplitudes(self) -> list[str]:
        return [line for line in self.lines if not line.startswith("user amplitude")]


def open_sdk_page(page, pipeline, extra: str = "") -> Console:
    micropython = pipeline.interpreter == "micropython"
    engine = (
        f"{micropython_url()}/micropython.mjs" if micropython else f"{pyodide_url()}/pyodide.mjs"
    )
    config = json.dumps({"interpreter": engine, "files": {f"/client/{wheel_filename()}": "./*"}})
    pipeline.pages["sdk.html"] = SDK_PAGE.format(
        pyscript=pyscript_url(),
        config=config,
        script_type="mpy" if micropython else "py",
        extra=extra,
    )
    page.add_init_script(MEDIA_PROBE)
    console = Console(page)
    page.goto(pipeline.url + "/test-pages/sdk.html")
    console.wait_for("status connected", timeout_s=60)
    return console


def texts(pipeline) -> list[str]:
    return [r.message["content"] for r in pipeline.messages("client.response.text")]


def test_the_official_sdks_documented_usage_runs_unchanged_but_for_spelling(page, pipeline):
    console = open_sdk_page(page, pipeline)
    (request,) = pipeline.authorizations
    assert request["agent_id"] == "ag_test" and request["conversation_id"] == "conv_7"
    assert request["metadata"] == {"userId": "123"} and "pipeline_id" not in request
    pipeline.wait_for(page, "client.audio", count=3)  # (on_connect was logged long before)
    connected = [line for line in console.lines if line.startswith("connected ")]
    assert connected[0].startswith("connected sess_scripted_1 {") and "automatic" in connected[0]
    pipeline.send({"type": "turn.start", "role": "user", "turn_id": "u1"})
    console.wait_for("user speaking True")
    pipeline.send({"type": "turn.end", "role": "user", "turn_id": "u1"})
    console.wait_for("user speaking False")
    pipeline.send({"type": "response.data", "content": {"n": 1}, "turn_id": "a1"})
    console.wait_for("data {'n': 1}")
    page.evaluate("act('getters')")
    console.wait_for("getters connected False sess_scripted_1 False False True True")
    page.evaluate("act('disconnect')")
    console.wait_for("status disconnected")
    assert not [line for line in console.lines if line.startswith("error")]
    assert console.without_amplitudes().count("disconnected") == 1


def test_mute_stops_audio_on_the_wire_and_unmute_resumes(page, pipeline):
    console = open_sdk_page(page, pipeline)
    pipeline.wait_for(page, "client.audio", count=5)
    page.evaluate("act('mute')")
    console.wait_for("muted True")
    assert page.evaluate(TRACKS_ENABLED) == [False]
    muted_at = len(console.lines)
    # A second and more of amplitude reports (15 a second), every one of them 0 while muted.
    for _ in range(15):
        console.wait_for("user amplitude 0.0", start=muted_at)
        muted_at = len(console.lines)
    page.evaluate("act('unmute')")
    console.wait_for("muted False")
    pipeline.wait_for(page, "client.response.text", count=2)
    types = [r.type if r.type != "client.response.text" else r.message["content"]
             for r in pipeline.received]  # fmt: skip
    between = types[types.index("muted now") + 1 : types.index("unmuted now")]
    assert between == [], between  # nothing left the browser while muted
    count = len(types)
    deadline = time.monotonic() + 10
    while len([r for r in pipeline.received[count:] if r.type == "client.audio"]) < 3:
        assert time.monotonic() < deadline, "no audio after unmute"
        page.wait_for_timeout(20)
    assert page.evaluate(TRACKS_ENABLED) == [True]
    # The chunk being filled at unmute() may go out early (after 20 ms of live audio, unless
    # less than that was left of it: tests/client/test_recorder_js.py); whole chunks (the
    # interpreter's default length: 40 ms on MicroPython, 100 on Pyodide, at 16 kHz) follow.
    whole = 16000 * default_chunk_ms(pipeline.interpreter) // 1000
    sizes = [len(base64.b64decode(r.message["content"])) // 2
             for r in pipeline.received[count:] if r.type == "client.audio"]  # fmt: skip
    assert max(sizes) <= whole and sizes[2] == whole, sizes


def test_text_and_data_reach_the_server(page, pipeline):
    open_sdk_page(page, pipeline)
    page.evaluate("act('text')")
    page.evaluate("act('data')")
    pipeline.wait_for(page, "client.response.text")
    (data,) = pipeline.wait_for(page, "client.response.data")
    assert texts(pipeline) == ["hello from the keyboard"]
    assert data.message == {"type": "client.response.data", "data": {"clicked": "buy", "n": 2}}


def test_audio_input_false_never_asks_for_the_microphone_and_works_by_text(page, pipeline):
    open_sdk_page(page, pipeline, extra='"audioInput": False,')
    page.evaluate("act('text')")
    pipeline.wait_for(page, "client.response.text")
    pcm = b"\x00\x10" * 4000  # 0.25 s: the agent still speaks
    pipeline.send({"type": "response.audio", "content": base64.b64encode(pcm).decode(),
                   "turn_id": "a1", "delta_id": "a1-1"})  # fmt: skip
    (finished,) = pipeline.wait_for(page, "trigger.response.audio.replay_finished")
    assert finished.message["last_delta_id_played"] == "a1-1"
    assert page.evaluate("window.__media.calls") == 0
    assert pipeline.messages("client.audio") == []


def test_an_agent_hang_up_is_a_normal_disconnect_not_an_error(page, pipeline):
    console = open_sdk_page(page, pipeline)
    pipeline.wait_for(page, "client.audio")
    pipeline.close(4003, "the agent ended the call")
    console.wait_for("status disconnected")
    page.evaluate("act('reason')")
    console.wait_for("reason 4003 the agent ended the call")
    lines = console.without_amplitudes()
    assert not [line for line in lines if line.startswith("error")], lines
    assert "status error" not in lines and lines.count("disconnected") == 1
