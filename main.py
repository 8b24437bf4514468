"""The demo page's Python: proves the runtime is up and the authorize endpoint is reachable.

Runs on the page's main thread under PyScript. Kept to UI wiring only.
"""

import json

import js
from pyodide.ffi import create_proxy
from pyodide.http import pyfetch


def element(element_id):
    return js.document.getElementById(element_id)


def page_setting(name):
    meta = js.document.querySelector(f'meta[name="layercode:{name}"]')
    return meta.content if meta else ""


def set_status(kind, text):
    pill = element("status")
    pill.dataset.status = kind
    pill.textContent = text


def show_error(text):
    banner = element("error")
    banner.textContent = text
    banner.hidden = not text


def log_line(kind, who, text):
    item = js.document.createElement("li")
    item.className = kind
    label = js.document.createElement("span")
    label.className = "who"
    label.textContent = who
    item.append(label, text)
    element("log").append(item)


async def check_authorize(event=None):
    show_error("")
    set_status("connecting", "Authorizing")
    body = json.dumps({"pipeline_id": page_setting("pipeline-id"), "metadata": {}})
    try:
        response = await pyfetch(
            page_setting("authorize-url"),
            method="POST",
            headers={"Content-Type": "application/json"},
            body=body,
        )
        answer = await response.json()
    except Exception as error:  # a network failure reaches us as a JS TypeError
        set_status("error", "Error")
        show_error(f"Could not reach the authorize endpoint: {error}")
        return
    if response.ok:
        set_status("connected", "Authorized")
        log_line("system", "server", f"session {answer.get('session_id', '?')} authorized")
    else:
        set_status("error", "Error")
        show_error(answer.get("error", f"HTTP {response.status}"))


connect_handler = create_proxy(check_authorize)
element("connect").addEventListener("click", connect_handler)
element("connect").disabled = False
set_status("ready", "Ready")
js.document.body.dataset.readyMs = str(round(js.performance.now()))
js.document.body.dataset.state = "ready"
