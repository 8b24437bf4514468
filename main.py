"""The demo page's Python: UI wiring for `LayercodeClient`, nothing more.

Runs on the page's main thread under PyScript (getUserMedia and AudioContext live there), on
MicroPython (the default) or Pyodide (`?py=pyodide`): it uses only what both offer, PyScript's
`document` and `ffi`, and `js.window` (not `pyscript.window`: on MicroPython that is the global
scope as a module, whose methods run with the wrong `this`). Connect/disconnect, hold-to-talk
(button or Space) for push-to-talk sessions, mute, microphone and speaker pickers that follow
device changes, a text box to type to the agent, status, level meters with speaking indicators,
a log of what was said and sent with each answer's measured latency, recording the call to a
WAV to download, and errors in plain words.
"""

import asyncio
import json
import sys

import js
from pyscript import document, ffi

from layercode_client import (
    LayercodeClient,
    LayercodeError,
    watch_audio_input_devices,
    watch_audio_output_devices,
)
from layercode_client.browser import js_bytes
from layercode_client.options import CHUNK_MS_BOUNDS

MICROPYTHON = sys.implementation.name == "micropython"
window = js.window
ERROR_WORDS = {
    "authorization_failed": "The server would not start a session",
    "microphone_permission_denied": "Microphone access is blocked. "
    "Allow it in the address bar, then connect again",
    "microphone_not_found": "No microphone was found. Connect one, then connect again",
    "websocket_failed": "Could not reach the voice service. Check your connection and retry",
    "websocket_closed": "The voice connection dropped",
    "audio_error": "Your browser's audio could not start",
    "insecure_context": "This page cannot use the microphone here",
    "browser_unsupported": "Your browser lacks a feature this needs",
    "output_device_not_found": "That speaker is not available",
}
STATUS_WORDS = {
    "disconnected": "Ready",
    "connecting": "Connecting…",
    "connected": "Connected",
    "reconnecting": "Reconnecting…",
    "error": "Error",
}
LIVE = ("connecting", "connected", "reconnecting")  # the button disconnects


def element(element_id):
    return document.getElementById(element_id)


def page_setting(name):
    meta = document.querySelector(f'meta[name="layercode:{name}"]')
    return "" if ffi.is_none(meta) else meta.content


def chunk_ms_asked():
    """The page's `?chunk_ms=N` (the microphone's chunk length, docs/client.md), or the
    client's default when absent or out of bounds: benches compare chunk lengths with it."""
    asked = js.URLSearchParams.new(window.location.search).get("chunk_ms")
    if ffi.is_none(asked) or not str(asked).isdigit():
        return {}
    low, high = CHUNK_MS_BOUNDS
    return {"chunk_ms": int(str(asked))} if low <= int(str(asked)) <= high else {}


def show_error(text, code=""):
    """Show `text` in the error banner (none: take it down); `code` is the error's, for a
    `notice` that ends it (docs/protocol.md)."""
    banner = element("error")
    banner.textContent = text
    banner.hidden = not text
    banner.setAttribute("data-code", code if text else "")


def log_line(kind, who, text, key=None):
    """Append a line to the conversation log, or update the line with this `key`."""
    item = document.querySelector(f'#log li[data-key="{key}"]') if key else None
    if ffi.is_none(item):
        item = document.createElement("li")
        if key:
            item.dataset.key = key
        label = document.createElement("span")
        label.className = "who"
        label.textContent = who
        body = document.createElement("span")
        body.className = "text"
        item.append(label, body)
        element("log").append(item)
    item.className = kind  # an interim line becomes final in place
    item.querySelector(".text").textContent = text
    item.scrollIntoView(ffi.to_js({"block": "nearest"}))


def set_meter(meter_id, level):
    bar = element(meter_id)
    percent = round(max(0.0, min(1.0, level)) * 100)
    bar.style.width = f"{percent}%"
    bar.parentElement.setAttribute("aria-valuenow", str(percent))


agent_text = {}  # turn_id → what the agent has said so far in that turn


def on_status_change(status):
    pill = element("status")
    pill.dataset.status = status
    pill.textContent = STATUS_WORDS.get(status, status)
    live = status in LIVE
    button = element("connect")
    button.textContent = "Disconnect" if live else "Connect"
    button.setAttribute("aria-pressed", "true" if live else "false")
    talk_button = element("talk")
    talk_button.hidden = not (status == "connected" and client.push_to_talk)
    if status != "connected":
        talk_button.setAttribute("aria-pressed", "false")
    connected = status == "connected"
    for control in ("mute", "say-text", "say-send"):
        element(control).disabled = not connected
    element("record").disabled = not (connected or client.is_recording)


def on_mute_state_change(muted):
    button = element("mute")
    button.textContent = "Unmute" if muted else "Mute"
    button.setAttribute("aria-pressed", "true" if muted else "false")


def show_speaking(meter_id, speaking):
    element(meter_id).dataset.speaking = "true" if speaking else "false"


def fill_picker(select_id, devices, kind):
    """Fill a device picker; the choice survives the list changing when still there."""
    select = element(select_id)
    chosen = select.value
    select.replaceChildren()
    for number, device in enumerate(devices):
        option = document.createElement("option")
        option.value = device["deviceId"] or "default"
        option.textContent = device["label"] or f"{kind} {number + 1}"
        select.append(option)
    ids = [d["deviceId"] for d in devices]
    select.value = chosen if chosen in ids else "default"


def show_devices(devices):
    fill_picker("device", devices, "Microphone")


def show_outputs(devices):
    fill_picker("output", devices, "Speaker")


def choose_output(event=None):
    """Takes effect at once, and for later sessions (errors: on_error)."""
    try:
        client.set_output_device(element("output").value)
    except LayercodeError as error:
        on_error(error)


def on_metrics(metric):
    """The measured latency under the answer it belongs to."""
    latency = metric["voice_to_voice_ms"]
    item = document.querySelector(f'#log li[data-key="agent-{metric["turn_id"]}"]')
    if latency is None or ffi.is_none(item):
        return
    note = item.querySelector(".latency")
    if ffi.is_none(note):
        note = document.createElement("span")
        note.className = "latency"
        item.append(note)
    server = (metric["timings"] or {}).get("voice_to_voice_ms")
    extra = f", server {server} ms" if server is not None else ""
    note.textContent = f"answered in {latency} ms{extra}"
    note.title = f"from the end of your speech ({metric['user_speech_end']}) to the first sound"


async def toggle_recording(event=None):
    button = element("record")
    if client.is_recording:
        wav = js_bytes(await client.stop_recording())
        blob = window.Blob.new(ffi.to_js([wav]), ffi.to_js({"type": "audio/wav"}))
        link = element("download")
        if link.href:
            window.URL.revokeObjectURL(link.href)
        link.href = window.URL.createObjectURL(blob)
        link.hidden = False
        button.textContent = "Record"
        button.setAttribute("aria-pressed", "false")
        button.disabled = client.status != "connected"
    elif client.status == "connected":
        client.start_recording()
        element("download").hidden = True
        button.textContent = "Stop recording"
        button.setAttribute("aria-pressed", "true")


def on_device_switched(device_id):
    element("device").value = device_id
    log_line("system", "session", "microphone switched")


def choose_device(event=None):
    """Takes effect at once when connected, at the next connect otherwise (errors: on_error)."""
    client.set_preferred_input_device(element("device").value)


def send_text(event):
    event.preventDefault()
    box = element("say-text")
    text = box.value.strip()
    if not text or client.status != "connected":
        return
    client.send_client_response_text(text)
    log_line("user typed", "you", text)
    box.value = ""


def on_connect(info):
    show_error("")
    log_line("system", "session", f"connected ({info['conversationId']})")


def on_reconnecting(info):
    """The connection dropped; the client is coming back by itself (docs/client.md)."""
    element("status").textContent = f"Reconnecting… (attempt {info['attempt']})"
    if info["attempt"] == 1:
        log_line("system", "session", f"connection lost (code {info['code']}), reconnecting")


def on_reconnected(info):
    log_line("system", "session", "reconnected")


def on_disconnect():
    log_line("system", "session", "disconnected")


def on_error(error):
    words = ERROR_WORDS.get(error.code)
    show_error(f"{words}: {error.message}" if words else error.message, error.code)


def on_message(message):
    kind, turn = message.get("type"), message.get("turn_id")
    if kind == "user.transcript.interim_delta":
        log_line("user interim", "you", message["content"] + "…", key=f"user-{turn}")
    elif kind == "user.transcript":
        log_line("user", "you", message["content"], key=f"user-{turn}")
    elif kind == "response.text":
        agent_text[turn] = (agent_text.get(turn, "") + " " + message["content"]).strip()
        log_line("agent", "agent", agent_text[turn], key=f"agent-{turn}")
    elif kind == "notice":  # a state an error told of is over (the history is saved again)
        log_line("system", "session", message["message"])
        if message.get("resolves") == element("error").getAttribute("data-code"):
            show_error("")


def on_data_message(message):
    log_line("data", "data", json.dumps(message["content"]))


client = LayercodeClient(
    pipeline_id=page_setting("pipeline-id"),
    authorize_session_endpoint=page_setting("authorize-url"),
    metadata={"page": "demo"},
    on_status_change=on_status_change,
    on_connect=on_connect,
    on_disconnect=on_disconnect,
    on_error=on_error,
    on_message=on_message,
    on_data_message=on_data_message,
    on_user_amplitude_change=lambda level: set_meter("user-level", level),
    on_agent_amplitude_change=lambda level: set_meter("agent-level", level),
    on_user_is_speaking_change=lambda speaking: show_speaking("user-meter", speaking),
    on_agent_speaking_change=lambda speaking: show_speaking("agent-meter", speaking),
    on_mute_state_change=on_mute_state_change,
    on_device_switched=on_device_switched,
    on_devices_changed=show_devices,  # with their names, once the microphone is allowed
    on_reconnecting=on_reconnecting,
    on_reconnected=on_reconnected,
    on_metrics=on_metrics,
    **chunk_ms_asked(),
)
# The player's AudioContext and worklet, made while the rest of the page gets ready: the first
# click then only resumes them (docs/client.md, `prepare_audio`). A disconnect releases them
# with the rest; a later connect makes its own.
client.prepare_audio()


def toggle_connection(event=None):
    """connect() is called in the click's own turn, so the prepared player resumes inside the
    user gesture (Chrome remembers one; Safari only while its event runs). Nothing awaits it:
    its error reaches on_error."""
    if client.status in LIVE:
        client.disconnect()
        return
    show_error("")
    client.connect()


def talk(pressed):
    if client.status != "connected" or not client.push_to_talk:
        return
    element("talk").setAttribute("aria-pressed", "true" if pressed else "false")
    if pressed:
        client.trigger_user_turn_started()
    else:
        client.trigger_user_turn_finished()


def on_key(event):
    if event.code != "Space" or event.repeat or event.target.tagName in ("INPUT", "TEXTAREA"):
        return
    if client.status == "connected" and client.push_to_talk:
        event.preventDefault()
        talk(event.type == "keydown")


handlers = [
    ("connect", "click", toggle_connection),
    ("talk", "pointerdown", lambda e: talk(True)),
    ("talk", "pointerup", lambda e: talk(False)),
    ("talk", "pointerleave", lambda e: talk(False)),
    ("talk", "pointercancel", lambda e: talk(False)),
    ("mute", "click", lambda e: client.unmute() if client.is_muted else client.mute()),
    ("device", "change", choose_device),
    ("output", "change", choose_output),
    ("record", "click", lambda e: asyncio.create_task(toggle_recording(e))),
    ("say", "submit", send_text),
]
proxies = []
for target, kind, handler in handlers:
    proxies.append(ffi.create_proxy(handler))
    element(target).addEventListener(kind, proxies[-1])
proxies.append(ffi.create_proxy(lambda e: talk(False)))  # Space held while the window lost focus
window.addEventListener("blur", proxies[-1])
for kind in ("keydown", "keyup"):
    proxies.append(ffi.create_proxy(on_key))
    document.addEventListener(kind, proxies[-1])

try:  # for the page's lifetime
    stop_watching_devices = watch_audio_input_devices(show_devices)
    stop_watching_outputs = watch_audio_output_devices(show_outputs)
except LayercodeError as error:  # not a secure context: connect() says so in full
    on_error(error)
if not client.can_choose_output:
    element("output").disabled = True
    element("output").title = "This browser plays on the system's default device only"
window.layercodeClient = client  # for the console (and tests)
element("connect").disabled = False
on_status_change(client.status)
document.body.dataset.interpreter = "micropython" if MICROPYTHON else "pyodide"
document.body.dataset.readyMs = str(round(window.performance.now()))
document.body.dataset.state = "ready"
