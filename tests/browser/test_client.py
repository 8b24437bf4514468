"""The Python client in real Chromium, against a scripted pipeline on a real WebSocket.

The microphone is Chromium's fake device playing a WAV made at test time (Piper speech), so
what the server receives can be compared with what was "said". The page is the demo page, and
every test runs on both of its interpreters: MicroPython (the default) and Pyodide.
"""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import pytest

from server.pipeline.audio import resample
from server.vendor import micropython_url, pyodide_url, pyscript_url
from server.wheel import wheel_filename
from tests.browser.conftest import default_chunk_ms
from tests.conftest import CHROMIUM_ARGS, chromium_launch_args
from tests.support.scripted_pipeline import ScriptedPipeline
from tests.support.servers import free_port, serve
from tests.support.speech import silence, speak, write_wav

pytestmark = pytest.mark.browser

SPOKEN = "The quick brown fox jumps over the lazy dog."

# Records what the page opened, in what order, and when the player was told to stop.
MEDIA_PROBE = """
window.__media = {streams: [], contexts: [], order: []};
const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = async (c) => {
  window.__media.order.push("microphone asked");
  const s = await gum(c);
  window.__media.order.push("microphone granted");
  window.__media.streams.push(s); return s;
};
const Base = window.AudioContext;
window.AudioContext = class extends Base {
  constructor(...a) {
    super(...a);
    window.__media.contexts.push(this);
    window.__media.order.push("audio context made");
  }
};
const addModule = AudioWorklet.prototype.addModule;
AudioWorklet.prototype.addModule = function (...a) {
  window.__media.order.push("worklet loading");
  return addModule.apply(this, a);
};
const post = MessagePort.prototype.postMessage;
MessagePort.prototype.postMessage = function (data, ...rest) {
  if (data && data.type === "interrupt") window.__interruptAt = Date.now();
  return post.call(this, data, ...rest);
};
"""
LIVE_MEDIA = """() => ({
  tracks: window.__media.streams.flatMap(s => s.getTracks())
    .filter(t => t.readyState === "live").length,
  contexts: window.__media.contexts.filter(c => c.state !== "closed").length,
})"""


@pytest.fixture(scope="module")
def spoken_wav(tmp_path_factory) -> tuple[bytes, object]:
    pcm = speak(SPOKEN) + silence(0.5)
    return pcm, write_wav(tmp_path_factory.mktemp("mic") / "spoken.wav", pcm, 16000)


@pytest.fixture(scope="module")
def mic_browser(playwright, spoken_wav):
    browser = playwright.chromium.launch(**chromium_launch_args(wav=spoken_wav[1]))
    yield browser
    browser.close()


INTERPRETERS = {"micropython": "/", "pyodide": "/?py=pyodide"}  # → the demo page's address


@pytest.fixture(params=list(INTERPRETERS))
def pipeline(request):
    """The scripted pipeline serving the demo page; `home` is the page on this interpreter."""
    scripted = ScriptedPipeline()
    with serve(scripted.app()) as url:
        scripted.url = url
        scripted.interpreter = request.param
        scripted.home = url + INTERPRETERS[request.param]
        yield scripted


@pytest.fixture
def page(mic_browser):
    context = mic_browser.new_context()
    context.add_init_script(MEDIA_PROBE)
    page = context.new_page()
    yield page
    context.close()


def open_page(page, pipeline) -> None:
    page.goto(pipeline.home)
    page.wait_for_selector("body[data-state=ready]", state="attached", timeout=60_000)
    assert page.get_attribute("body", "data-interpreter") == pipeline.interpreter


def open_and_connect(page, pipeline) -> None:
    open_page(page, pipeline)
    page.click("#connect")
    page.wait_for_selector("#status[data-status=connected]", timeout=20_000)


def tone(seconds: float, freq: float = 440.0, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * 12000).astype("<i2").tobytes()


def send_audio(pipeline, pcm: bytes, turn_id: str, chunk_s: float = 0.25) -> float:
    step = int(16000 * chunk_s) * 2
    for n, offset in enumerate(range(0, len(pcm), step)):
        content = base64.b64encode(pcm[offset : offset + step]).decode()
        sent = pipeline.send(
            {
                "type": "response.audio",
                "content": content,
                "turn_id": turn_id,
                "delta_id": f"{turn_id}-{n}",
            }
        )
    return sent


def agent_level(page) -> int:
    return int(page.get_attribute("#agent-level", "style").split(":")[1].strip(" %;") or 0)


def envelope(pcm: bytes, rate: int) -> np.ndarray:
    """RMS of each 10 ms of PCM16."""
    x = np.frombuffer(pcm, "<i2").astype(float)
    frame = rate // 100
    x = x[: len(x) // frame * frame].reshape(-1, frame)
    return np.sqrt((x**2).mean(axis=1))


def envelope_alignment(received: bytes, template: bytes, rate: int) -> tuple[float, float]:
    """Where `template` fits best in `received`, by their envelopes at 10 ms steps: the best
    Pearson correlation, and the offset in seconds at which it was found."""
    x, y = envelope(received, rate), envelope(template, rate)
    y = (y - y.mean()) / (y.std() + 1e-9)
    best, best_at = -1.0, 0
    for offset in range(len(x) - len(y) + 1):
        w = x[offset : offset + len(y)]
        correlation = float(np.mean((w - w.mean()) / (w.std() + 1e-9) * y))
        if correlation > best:
            best, best_at = correlation, offset
    return best, best_at / 100


def best_envelope_correlation(received: bytes, template: bytes, rate: int) -> float:
    """Best Pearson correlation of `template`'s envelope at any 10 ms offset in `received`'s."""
    return envelope_alignment(received, template, rate)[0]


@pytest.mark.parametrize("rate", [16000, 8000])
def test_the_microphone_streams_at_the_configured_rate_and_matches_the_wav(
    page, pipeline, spoken_wav, rate
):
    pipeline.input_sample_rate = rate
    open_and_connect(page, pipeline)
    chunks = pipeline.wait_for(page, "client.audio", count=40, timeout_s=20)
    assert pipeline.received[0].type == "client.ready"
    assert pipeline.authorizations[0]["audio"]["input_sample_rates"] == [16000, 8000]
    sizes = [len(base64.b64decode(c.message["content"])) for c in chunks]
    chunk_ms = default_chunk_ms(pipeline.interpreter)
    assert set(sizes) == {rate * chunk_ms // 1000 * 2}  # a chunk of PCM16 each
    # Chromium's fake microphone loops the WAV from when the track starts, and the recorder
    # joins a few ms later: what is heard starts anywhere in the loop, so it is searched in the
    # WAV looped twice. Chromium's capture processing (echo cancellation, noise suppression,
    # gain control, which the client asks for as the official SDK does) reshapes the waveform,
    # most in the first second while it adapts: sample correlation read 0.37-0.81 from run to
    # run. The loudness contour survives it, so what is compared is the 10 ms envelope of 2 s
    # heard after the first second; a wrong rate (time stretched 2x) or other audio fails.
    heard = pipeline.audio()
    looped = resample(spoken_wav[0], 16000, rate) * 2
    correlation = best_envelope_correlation(looped, heard[rate * 2 : rate * 2 * 3], rate)
    assert correlation > 0.8, correlation
    page.click("#connect")
    page.wait_for_selector("#status[data-status=disconnected]")
    assert page.evaluate(LIVE_MEDIA) == {"tracks": 0, "contexts": 0}


def test_agent_audio_plays_then_replay_finished(page, pipeline):
    open_and_connect(page, pipeline)
    started = time.monotonic()
    send_audio(pipeline, tone(1.2), "turn_a")
    levels = []
    while time.monotonic() - started < 0.9:
        levels.append(agent_level(page))
        page.wait_for_timeout(50)
    assert max(levels) > 10, levels
    (finished,) = pipeline.wait_for(page, "trigger.response.audio.replay_finished", timeout_s=5)
    assert finished.at - started >= 1.1  # not before the 1.2 s of audio could have played
    assert finished.message["last_delta_id_played"] == "turn_a-4"
    page.wait_for_timeout(300)
    assert agent_level(page) == 0
    # More audio later: played and reported again.
    send_audio(pipeline, tone(0.3), "turn_b")
    pipeline.wait_for(page, "trigger.response.audio.replay_finished", count=2, timeout_s=5)


def test_barge_in_stops_playback_at_once(page, pipeline):
    open_and_connect(page, pipeline)
    send_audio(pipeline, tone(4.0), "turn_long")
    page.wait_for_timeout(600)
    assert agent_level(page) > 10
    sent_ms = time.time() * 1000
    pipeline.send({"type": "turn.start", "role": "user", "turn_id": "turn_user"})
    page.wait_for_function("window.__interruptAt !== undefined", timeout=5000)
    assert page.evaluate("window.__interruptAt") - sent_ms < 100
    # The player says where it stopped (this pipeline is ours): about 600 ms into turn_long.
    (report,) = pipeline.wait_for(page, "trigger.response.audio.interrupted", timeout_s=5)
    assert report.message["turn_id"] == "turn_long"
    assert report.message["last_delta_id_played"].startswith("turn_long-")
    assert 300 <= report.message["played_ms"] < 4000
    send_audio(pipeline, tone(0.5), "turn_long")  # late audio of the interrupted turn
    page.wait_for_timeout(400)
    assert agent_level(page) == 0
    assert pipeline.messages("trigger.response.audio.replay_finished") == []


def test_push_to_talk_gates_audio_and_sends_turn_triggers(page, pipeline):
    pipeline.trigger = "push_to_talk"
    open_and_connect(page, pipeline)
    assert page.is_visible("#talk")
    page.wait_for_timeout(1000)
    assert pipeline.messages("client.audio") == []
    page.keyboard.down("Space")
    start = pipeline.wait_for(page, "trigger.turn.start")[0]
    page.wait_for_timeout(1000)
    page.keyboard.up("Space")
    end = pipeline.wait_for(page, "trigger.turn.end")[0]
    held = [r for r in pipeline.messages("client.audio") if start.at <= r.at <= end.at]
    assert len(held) >= 10  # a second of audio, with the pre-roll sent at the press
    assert start.message["role"] == end.message["role"] == "user"
    page.wait_for_timeout(600)
    after = [r for r in pipeline.messages("client.audio") if r.at > end.at + 0.05]
    assert after == []


def test_data_messages_and_transcripts_show_on_the_page(page, pipeline):
    open_and_connect(page, pipeline)
    pipeline.send({"type": "user.transcript.interim_delta", "content": "what ti", "turn_id": "u1"})
    pipeline.send({"type": "user.transcript", "content": "what time is it", "turn_id": "u1"})
    pipeline.send({"type": "response.text", "content": "It's noon.", "turn_id": "a1"})
    pipeline.send({"type": "response.data", "content": {"heard": "hello"}, "turn_id": "a1"})
    page.wait_for_selector("#log li.data", timeout=5000)
    log = page.inner_text("#log")
    assert "what time is it" in log and "what ti…" not in log  # the final replaced the interim
    assert "It's noon." in log and '"heard": "hello"' in log


def test_reconnect_resumes_the_session(page, pipeline):
    open_and_connect(page, pipeline)
    page.click("#connect")
    page.wait_for_selector("#status[data-status=disconnected]")
    assert page.evaluate(LIVE_MEDIA) == {"tracks": 0, "contexts": 0}
    page.click("#connect")
    page.wait_for_selector("#status[data-status=connected]", timeout=20_000)
    assert "session_id" not in pipeline.authorizations[0]
    assert pipeline.authorizations[1]["session_id"] == "sess_scripted_1"


@pytest.mark.parametrize(
    "failure,words",
    [
        ((401, '{"error": "invalid pipeline id"}'), "invalid pipeline id"),
        ((500, "upstream exploded"), "HTTP 500"),
    ],
)
def test_authorization_errors_are_shown_in_words(page, pipeline, failure, words):
    pipeline.authorize_failure = failure
    open_page(page, pipeline)
    page.click("#connect")
    page.wait_for_selector("#status[data-status=error]", timeout=10_000)
    banner = page.inner_text("#error")
    assert "would not start a session" in banner and words in banner
    assert page.evaluate(LIVE_MEDIA) == {"tracks": 0, "contexts": 0}


def test_a_notice_takes_down_the_error_it_resolves_and_no_other(page, pipeline):
    """The history store away, then back: the banner says so, then goes (docs/protocol.md)."""
    open_and_connect(page, pipeline)
    notice = {"type": "notice", "code": "history_stored", "resolves": "history_unavailable"}
    pipeline.send({"type": "error", "code": "agent_timeout", "message": "the agent is slow"})
    page.wait_for_selector("#error:not([hidden])", timeout=10_000)
    pipeline.send({**notice, "message": "saved again (1)"})
    page.wait_for_selector("#log >> text=saved again (1)", timeout=10_000)
    assert page.inner_text("#error") == "the agent is slow"  # not the error it resolves
    pipeline.send({"type": "error", "code": "history_unavailable", "message": "cannot save"})
    page.wait_for_selector("#error >> text=cannot save", timeout=10_000)
    pipeline.send({**notice, "message": "saved again (2)"})
    page.wait_for_selector("#error", state="hidden", timeout=10_000)
    assert "saved again (2)" in page.inner_text("#log")


def test_an_abrupt_server_close_reconnects_and_an_unresumable_one_is_an_error(page, pipeline):
    """1011 is a failure the client comes back from by itself (docs/client.md, Reconnect); when
    the backend then refuses to authorize the conversation again, it is an error in words."""
    open_and_connect(page, pipeline)
    pipeline.close(1011, "the pipeline failed")
    pipeline.wait_for(page, "client.ready", count=2)  # a second socket, without a click
    page.wait_for_selector("#status[data-status=connected]", timeout=10_000)
    assert "reconnecting" in page.inner_text("#log")
    _, again = pipeline.authorizations
    assert again["session_id"] == "sess_scripted_1"  # the same conversation
    pipeline.authorize_failure = (403, '{"error": "conversation not found"}')
    pipeline.close(1011, "the pipeline failed")
    page.wait_for_selector("#status[data-status=error]", timeout=10_000)
    assert page.evaluate(LIVE_MEDIA) == {"tracks": 0, "contexts": 0}


def test_a_denied_microphone_is_an_error(playwright, pipeline):
    args = [a for a in CHROMIUM_ARGS if a != "--use-fake-ui-for-media-stream"]
    browser = playwright.chromium.launch(**{**chromium_launch_args(), "args": args})
    try:
        page = browser.new_page()  # no permission granted: getUserMedia is refused
        page.add_init_script(MEDIA_PROBE)
        open_page(page, pipeline)
        page.click("#connect")
        page.wait_for_selector("#status[data-status=error]", timeout=10_000)
        assert "Microphone access is blocked" in page.inner_text("#error")
        # The recorder's AudioContext, started while the browser was asked, is closed again.
        page.wait_for_function("() => window.__media.contexts.every(c => c.state === 'closed')")
    finally:
        browser.close()


def test_the_recorders_audio_context_starts_while_the_microphone_is_granted(page, pipeline):
    """The recorder's AudioContext and worklet need no stream: they start when the browser is
    asked for the microphone, not after it granted it (one after the other, about 20 ms of a
    connect). The client then records as before."""
    open_and_connect(page, pipeline)
    pipeline.wait_for(page, "client.audio", count=5, timeout_s=20)
    order = page.evaluate("window.__media.order")  # MEDIA_PROBE's
    asked, granted = order.index("microphone asked"), order.index("microphone granted")
    assert "audio context made" in order[asked:granted], order
    assert order.count("audio context made") == 2, order  # the player's and the recorder's
    page.click("#connect")
    page.wait_for_selector("#status[data-status=disconnected]")
    assert page.evaluate(LIVE_MEDIA) == {"tracks": 0, "contexts": 0}


def wait_context_state(page, index: int, state: str) -> None:
    page.wait_for_function(
        f"() => window.__media.contexts[{index}].state === {state!r}", timeout=10_000
    )


def assert_prepared_player_plays(page, pipeline) -> None:
    """The page made the player's AudioContext (16 kHz) and loaded a worklet when it got ready,
    and left it suspended; the click resumes that context, makes no other for the player (only
    the recorder's), and the agent plays through it; disconnecting closes both."""
    open_page(page, pipeline)
    assert page.evaluate("window.__media.order") == ["audio context made", "worklet loading"]
    assert page.evaluate("window.__media.contexts[0].sampleRate") == 16000
    wait_context_state(page, 0, "suspended")
    page.click("#connect")
    page.wait_for_selector("#status[data-status=connected]", timeout=20_000)
    assert page.evaluate("window.__media.contexts[0].state") == "running"
    order = page.evaluate("window.__media.order")
    assert order.count("audio context made") == 2, order  # the player's and the recorder's
    assert order.index("microphone asked") > 1, order  # the player's came long before
    send_audio(pipeline, tone(0.8), "turn_p")
    # The worklet reports a level only while its context runs.
    page.wait_for_function(
        "() => parseInt(document.getElementById('agent-level').style.width) > 10", timeout=5_000
    )
    (finished,) = pipeline.wait_for(page, "trigger.response.audio.replay_finished", timeout_s=5)
    assert finished.message["last_delta_id_played"] == "turn_p-3"
    page.click("#connect")
    page.wait_for_selector("#status[data-status=disconnected]")
    assert page.evaluate(LIVE_MEDIA) == {"tracks": 0, "contexts": 0}


def test_the_players_audio_is_prepared_when_the_page_is_ready_and_the_click_resumes_it(
    page, pipeline
):
    """`prepare_audio()` on the demo page, Chromium's autoplay allowed (the tests' flag): the
    prepared context would run at once; the player idles it until the click."""
    assert_prepared_player_plays(page, pipeline)


def test_the_prepared_player_starts_under_chromiums_real_autoplay_policy(
    playwright, pipeline, spoken_wav
):
    """Chrome's own policy (a context made before the user's gesture starts suspended, and
    resumes only after one): the click, a real input event, lets the connect resume it."""
    args = [a for a in CHROMIUM_ARGS if not a.startswith("--autoplay-policy=")]
    args += ["--autoplay-policy=document-user-activation-required",
             f"--use-file-for-fake-audio-capture={spoken_wav[1]}"]  # fmt: skip
    browser = playwright.chromium.launch(**{**chromium_launch_args(), "args": args})
    try:
        page = browser.new_page()
        page.add_init_script(MEDIA_PROBE)
        assert_prepared_player_plays(page, pipeline)
    finally:
        browser.close()


def test_agent_audio_sent_before_client_ready_still_plays(page, pipeline):
    """A pipeline may greet the moment the socket opens: the player is already there."""
    pcm = tone(0.5)
    pipeline.greeting = [
        {"type": "response.audio", "content": base64.b64encode(pcm).decode(),
         "turn_id": "greet", "delta_id": "greet-1"},
    ]  # fmt: skip
    open_and_connect(page, pipeline)
    (finished,) = pipeline.wait_for(page, "trigger.response.audio.replay_finished", timeout_s=10)
    assert finished.message["last_delta_id_played"] == "greet-1"


# Chromium samples some sessions' renderer allocations for its heap profiler; these feature
# parameters make it sample every renderer, every few KiB, so a crash it causes shows at once.
HEAP_SAMPLING = (
    "--enable-features=HeapProfilerReporting:stable-probability/1.0/nonstable-probability/1.0"
    "/renderer-prob-pct/100/renderer-sampling-rate-bytes/4096"
)


def test_the_page_survives_chromiums_heap_sampling_profiler(playwright, pipeline, spoken_wav):
    """Sampled allocations on Pyodide's JSPI stacks crashed the tab; the page hides JSPI."""
    browser = playwright.chromium.launch(
        **chromium_launch_args(wav=spoken_wav[1], extra=[HEAP_SAMPLING])
    )
    try:
        page = browser.new_page()
        crashed = []
        page.on("crash", lambda _: crashed.append(True))
        open_and_connect(page, pipeline)
        pipeline.wait_for(page, "client.audio", count=20, timeout_s=10)
        send_audio(pipeline, tone(0.5), "sampled")
        pipeline.wait_for(page, "trigger.response.audio.replay_finished", timeout_s=10)
        assert not crashed
    finally:
        browser.close()


def test_an_unreachable_voice_service_is_an_error(page, pipeline):
    pipeline.websocket_url = f"ws://127.0.0.1:{free_port()}/ws"  # nothing listens there
    open_page(page, pipeline)
    page.click("#connect")
    page.wait_for_selector("#status[data-status=error]", timeout=10_000)
    assert "Could not reach the voice service" in page.inner_text("#error")
    assert page.evaluate(LIVE_MEDIA) == {"tracks": 0, "contexts": 0}


SEED_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<script>delete WebAssembly.Suspending; delete WebAssembly.promising;</script>
<script type="module" src="{pyscript}/core.js"></script></head>
<body><script type="{script_type}" config='{config}'>
import js
from layercode_client import LayercodeClient

def log(*words):
    js.console.log("seed: " + " ".join(str(w) for w in words))

# The seed's example, word for word (JS's console.log is `log` here).
js.window.layercode = LayercodeClient({{
    "pipelineId": "your-pipeline-id",
    "sessionId": "your-session-id",  # optional
    "authorizeSessionEndpoint": "/api/authorize",
    "metadata": {{"userId": "123"}},  # optional
    "onConnect": lambda info: log("connected", info["sessionId"]),
    "onDisconnect": lambda: log("disconnected"),
    "onError": lambda err: log("error", err),
    "onDataMessage": lambda msg: log("data message", msg["content"]),
    "onUserAmplitudeChange": lambda amp: log("user amplitude", amp),
    "onAgentAmplitudeChange": lambda amp: log("agent amplitude", amp),
    "onStatusChange": lambda status: log("status", status),
}})

js.window.layercode.connect()
</script></body></html>
"""


def test_the_seeds_example_runs_word_for_word(page, pipeline):
    micropython = pipeline.interpreter == "micropython"
    engine = (
        f"{micropython_url()}/micropython.mjs" if micropython else f"{pyodide_url()}/pyodide.mjs"
    )
    config = json.dumps({"interpreter": engine, "files": {f"/client/{wheel_filename()}": "./*"}})
    pipeline.pages["seed.html"] = SEED_PAGE.format(
        pyscript=pyscript_url(), config=config, script_type="mpy" if micropython else "py"
    )
    logged: list[str] = []
    page.on("console", lambda m: m.text.startswith("seed: ") and logged.append(m.text[6:]))
    page.goto(pipeline.url + "/test-pages/seed.html")
    deadline = time.monotonic() + 60
    while "connected your-session-id" not in logged and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert logged[:2] == ["status connecting", "status connected"], logged[:30]
    assert "connected your-session-id" in logged
    (request,) = pipeline.authorizations
    assert request["pipeline_id"] == "your-pipeline-id"
    assert request["session_id"] == "your-session-id" and request["metadata"] == {"userId": "123"}
    pipeline.send({"type": "response.data", "content": {"n": 1}, "turn_id": "t"})
    pipeline.wait_for(page, "client.audio", count=5)
    page.wait_for_timeout(300)
    assert "data message {'n': 1}" in logged
    levels = [float(t.split()[-1]) for t in logged if t.startswith("user amplitude")]
    assert len(levels) > 3 and max(levels) > 0
    page.evaluate("() => { window.layercode.disconnect(); }")
    page.wait_for_timeout(500)
    assert logged[-1] == "status disconnected" and logged.count("disconnected") == 1
    assert page.evaluate(LIVE_MEDIA) == {"tracks": 0, "contexts": 0}


def received_kinds(pipeline) -> list[str]:
    """What arrived, in order; a typed text as its content."""
    return [r.message["content"] if r.type == "client.response.text" else r.type
            for r in pipeline.received]  # fmt: skip


def type_to_the_agent(page, pipeline, text: str) -> None:
    count = len(pipeline.messages("client.response.text"))
    page.fill("#say-text", text)
    page.press("#say-text", "Enter")
    pipeline.wait_for(page, "client.response.text", count=count + 1)


def test_the_demo_page_mutes_takes_typed_text_and_shows_who_speaks(page, pipeline):
    open_and_connect(page, pipeline)
    pipeline.wait_for(page, "client.audio", count=3)
    page.click("#mute")
    page.wait_for_selector("#mute[aria-pressed=true]")
    assert page.inner_text("#mute") == "Unmute"
    type_to_the_agent(page, pipeline, "typed while muted")
    page.wait_for_selector("#user-meter .track[aria-valuenow='0']")
    type_to_the_agent(page, pipeline, "still muted")
    kinds = received_kinds(pipeline)
    assert kinds[kinds.index("typed while muted") + 1 :] == ["still muted"]
    assert "typed while muted" in page.inner_text("#log")
    page.click("#mute")
    page.wait_for_selector("#mute[aria-pressed=false]")
    pipeline.wait_for(page, "client.audio", count=len(pipeline.messages("client.audio")) + 3)
    # Who is speaking, for both sides.
    pipeline.send({"type": "turn.start", "role": "user", "turn_id": "u1"})
    page.wait_for_selector("#user-meter[data-speaking=true]")
    pipeline.send({"type": "turn.end", "role": "user", "turn_id": "u1"})
    page.wait_for_selector("#user-meter[data-speaking=false]")
    send_audio(pipeline, tone(0.5), "a1")
    page.wait_for_selector("#agent-meter[data-speaking=true]")
    pipeline.wait_for(page, "trigger.response.audio.replay_finished")
    page.wait_for_selector("#agent-meter[data-speaking=false]")


def test_the_demo_page_lists_microphones_and_switching_keeps_the_session(page, pipeline):
    open_and_connect(page, pipeline)
    page.wait_for_function(
        "[...document.querySelectorAll('#device option')].some(o => o.textContent.includes('Fake'))"
    )
    ids = page.eval_on_selector_all("#device option", "os => os.map(o => o.value)")
    other = [i for i in ids if i not in ("default", "communications")][-1]
    connection = pipeline.connection
    page.select_option("#device", other)
    page.wait_for_function(
        "document.querySelector('#log').textContent.includes('microphone switched')"
    )
    after = len(pipeline.messages("client.audio"))
    pipeline.wait_for(page, "client.audio", count=after + 5)
    assert pipeline.connection == connection and len(pipeline.authorizations) == 1
    assert page.get_attribute("#status", "data-status") == "connected"
    assert page.evaluate(LIVE_MEDIA)["tracks"] == 1  # the old device's track was stopped
