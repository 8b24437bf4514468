"""The browser, through PyScript: fetch, WebSocket, microphone and speaker.

The only module that touches JavaScript, and only through what both of PyScript's interpreters
offer (`js.window`, `pyscript.ffi`), so it runs on Pyodide and on MicroPython.
Each class owns the JS objects and proxies it creates and releases all of them when closed, so
a disconnected client leaves nothing running: no live microphone track, no running
AudioContext, no proxy JS could still call.

Audio crosses between JS and Python as base64 text, the form it has on the wire: the recorder
worklet encodes each chunk and the player worklet decodes, on the audio thread. Strings are the
one kind of value both interpreters pass cheaply (MicroPython copies a typed array into bytes
element by element: 3.5 ms per 100 ms chunk, measured).

On MicroPython a JS exception thrown by a synchronous call cannot be caught (compat.py), so
arguments are checked here before `new WebSocket(...)`; promises reject catchably on both.
"""

import asyncio
import binascii
import json
import sys

import js
from pyscript import ffi

from .compat import call_soon
from .errors import (
    AudioError,
    BrowserUnsupported,
    ConnectionFailed,
    InsecureContextError,
    LayercodeError,
    MicrophoneNotFound,
    MicrophonePermissionDenied,
    OutputDeviceNotFound,
)

try:
    from pyodide.ffi import JsException  # Pyodide
except ImportError:
    from jsffi import JsException  # MicroPython

# Voice needs Chrome's echo cancellation (the agent's voice must not come back as the user's).
MICROPHONE_CONSTRAINTS = {
    "channelCount": 1,
    "echoCancellation": True,
    "noiseSuppression": True,
    "autoGainControl": True,
}
# The Window object. Not `pyscript.window`: on MicroPython that is the global scope as a module,
# and a method called on it (fetch, addEventListener) runs with the wrong `this`, throwing an
# "Illegal invocation" no Python code can catch.
window = js.window
MICROPYTHON = sys.implementation.name == "micropython"
CROSSING_BYTES = 65536  # bytes per hex string between JS and MicroPython
# After unmute() the chunk being filled goes out after this much live audio instead of when full
# (recorder.js): `./dev bench unmute`, p95 of unmute → first audio at the server.
RESUME_CHUNK_MS = 20
# The recorder's AudioContext started beside the microphone's grant instead of after it
# (`./dev bench start_ab --variants late_recorder` is the A/B; False: after, as before).
EARLY_RECORDER_CONTEXT = True
PACKAGE_DIR = __file__.rsplit("/", 1)[0] + "/"
WORKLETS_DIR = PACKAGE_DIR + "worklets/"


def js_error_name(error):
    """The JS error's name (`NotAllowedError`, …): `.name` on Pyodide, `args[1]` on MicroPython."""
    name = getattr(error, "name", None)
    if isinstance(name, str):
        return name
    args = getattr(error, "args", ())
    return args[1] if len(args) > 1 and isinstance(args[1], str) else str(error)


def js_error_text(error):
    """`Name: message` of a JS error on either interpreter."""
    args = getattr(error, "args", ())
    if len(args) > 2 and isinstance(args[1], str):  # MicroPython: (error, name, message)
        return f"{args[1]}: {args[2]}"
    return str(error)


def js_string(value):
    """A JS string as `str`; anything else (null, undefined, a number) as None."""
    return value if isinstance(value, str) else None


def has(target, name):
    """Feature detection that works on both interpreters (`name in target`)."""
    return bool(js.Reflect.has(target, name))


def require_audio_worklet():
    if not window.isSecureContext:
        raise InsecureContextError(
            f"{window.location.origin} is not a secure context: the browser offers no "
            "microphone or audio worklets. Open the page over HTTPS or from localhost"
        )
    if not has(window, "AudioWorkletNode"):
        raise BrowserUnsupported(
            "this browser has no AudioWorklet: use a current Chrome, Edge, Firefox or Safari"
        )


def worklet_url(name):
    """A Blob URL for a worklet shipped inside this package: nothing fetched from elsewhere."""
    with open(WORKLETS_DIR + name) as file:
        source = file.read()
    blob = window.Blob.new(ffi.to_js([source]), ffi.to_js({"type": "text/javascript"}))
    return window.URL.createObjectURL(blob)


def js_bytes(data):
    """Python bytes as a JS Uint8Array, for a page to make a Blob of (a recording's WAV, say).
    On MicroPython as hex (`Uint8Array.fromHex` reads it in C; `Uint8Array.new(bytes)` takes
    5 µs a byte there), 64 KB at a time: one long string fails to allocate in a fragmented heap.
    (`fromHex` came with `Uint8Array.prototype.toHex`; the class itself reaches `Reflect.has`
    from MicroPython as a wrapper without its static methods.)"""
    if not MICROPYTHON or not has(window.Uint8Array.prototype, "toHex"):
        return window.Uint8Array.new(ffi.to_js(data)) if MICROPYTHON else ffi.to_js(data)
    array = window.Uint8Array.new(len(data))
    view = memoryview(data)
    for start in range(0, len(data), CROSSING_BYTES):
        part = bytes(view[start : start + CROSSING_BYTES]).hex()
        array.set(window.Uint8Array.fromHex(part), start)
    return array


def python_bytes(array):
    """A JS Uint8Array as Python bytes. On MicroPython as hex (`toHex` and `bytes.fromhex` run
    in C; `bytes(array)` copies element by element, 10 µs a byte), 64 KB at a time, as
    `js_bytes` does the other way; on Pyodide its own copy (`to_bytes`)."""
    if not MICROPYTHON:
        return array.to_bytes()
    length = int(array.length)
    data = bytearray(length)
    for start in range(0, length, CROSSING_BYTES):
        end = min(start + CROSSING_BYTES, length)
        data[start:end] = bytes.fromhex(array.subarray(start, end).toHex())
    return data


class Proxies:
    """Every Python callable handed to JS, so all can be released together."""

    def __init__(self):
        self._proxies = []

    def __call__(self, function):
        proxy = ffi.create_proxy(function)
        self._proxies.append(proxy)
        return proxy

    def destroy(self):
        for proxy in self._proxies:
            destroy = getattr(proxy, "destroy", None)  # Pyodide's; MicroPython collects its own
            if destroy is not None:
                destroy()
        self._proxies = []


def handled(promise):
    """Mark a promise nobody may await as handled: its rejection is not reported as unhandled
    (whoever awaits it later still gets the error)."""
    window.Promise.allSettled(ffi.to_js([promise]))
    return promise


def stop_when_granted(request):
    """Stop the tracks of a getUserMedia request nobody awaits any more, if it is granted."""
    proxies = Proxies()

    def settled(stream=None):
        if stream is not None and hasattr(stream, "getTracks"):
            for track in stream.getTracks():
                track.stop()
        call_soon(proxies.destroy)  # not while JS is still inside these proxies

    request.then(proxies(settled), proxies(settled))


class BrowserSocket:
    def __init__(self, ws, proxies):
        self._ws = ws
        self._proxies = proxies

    @classmethod
    async def open(cls, url, on_message, on_close):
        if not (url.startswith("ws://") or url.startswith("wss://")) or "#" in url:
            raise ConnectionFailed(f"not a WebSocket URL: {url.split('?')[0]!r}")
        opened = asyncio.Event()
        failure = []  # the ConnectionFailed, if it closed before opening
        proxies = Proxies()
        ws = window.WebSocket.new(url)
        socket = cls(ws, proxies)

        def handle_open(event):
            opened.set()

        def handle_message(event):
            text = js_string(event.data)
            if text is not None:
                on_message(text)

        def handle_close(event):
            if not opened.is_set():
                reason = f": {event.reason}" if event.reason else ""
                failure.append(
                    ConnectionFailed(f"the voice connection failed (code {event.code}){reason}")
                )
                opened.set()
            else:
                on_close(event.code, event.reason)
            call_soon(socket._release)  # not while JS is still inside this proxy

        ws.onopen = proxies(handle_open)
        ws.onmessage = proxies(handle_message)
        ws.onclose = proxies(handle_close)
        try:
            await opened.wait()
        except asyncio.CancelledError:  # disconnect() while still connecting
            socket.close(1000, "client disconnected")
            raise
        if failure:
            raise failure[0]
        return socket

    def send(self, text):
        if self._ws is not None and self._ws.readyState == 1:
            self._ws.send(text)

    def close(self, code=1000, reason=""):
        if self._ws is not None and self._ws.readyState <= 1:
            self._ws.close(code, reason)
        self._release()

    def _release(self):
        if self._ws is not None:
            self._ws.onopen = self._ws.onmessage = self._ws.onclose = None
            self._ws = None
        self._proxies.destroy()


class BrowserMicrophone:
    def __init__(self):
        self._proxies = Proxies()
        self._stream = self._context = self._source = self._node = None
        self.framed = False  # chunks come as whole `client.audio` messages (`framing`)
        self._wavs = {}  # request id -> [asyncio.Event, hex parts or None], until answered
        self._next_id = 0

    @property
    def stream(self):
        return self._stream

    def set_muted(self, muted):
        if self._stream is not None:
            for track in self._stream.getAudioTracks():
                track.enabled = not muted
        if not muted and self._node is not None:  # the next chunk goes out early (recorder.js)
            self._node.port.postMessage(ffi.to_js({"type": "unmuted"}))

    async def start(self, sample_rate, chunk_ms, on_chunk, device_id=None, framing=None):
        require_audio_worklet()
        constraints = dict(MICROPHONE_CONSTRAINTS)
        if device_id and device_id != "default":
            constraints["deviceId"] = {"exact": device_id}
        request = window.navigator.mediaDevices.getUserMedia(ffi.to_js({"audio": constraints}))
        # The recorder's AudioContext and worklet need no stream: they start while the browser
        # grants the microphone, not after (one after the other, about 20 ms of a connect; a
        # person's grant takes seconds, which they are then ready by).
        worklet = None
        if EARLY_RECORDER_CONTEXT:
            try:
                worklet = self._start_context(sample_rate)
            except JsException:  # made again after the grant, where its error is said
                self._context = None
        try:
            self._stream = await request
        except asyncio.CancelledError:  # disconnect() while the browser was still asking
            stop_when_granted(request)
            self.stop()
            raise
        except JsException as error:
            self.stop()
            name = js_error_name(error)
            if "NotAllowed" in name or "Security" in name:
                raise MicrophonePermissionDenied(
                    "microphone access was denied: allow it in the browser to talk"
                ) from error
            if "NotFound" in name or "Overconstrained" in name or "NotReadable" in name:
                raise MicrophoneNotFound(
                    "no usable microphone was found: connect one and try again"
                ) from error
            raise AudioError(f"the microphone could not start: {js_error_text(error)}") from error
        try:
            if worklet is not None and self._context.state != "running":
                # Not started: without a user gesture the browser holds back a context created
                # before the microphone was granted (autoplay policy); one created after the
                # grant runs. (A context still starting is replaced too, as before the change.)
                self._context.close()
                worklet = None
            if worklet is None:
                worklet = self._start_context(sample_rate)
            await worklet
            self._source = self._context.createMediaStreamSource(self._stream)
            chunk = sample_rate * chunk_ms // 1000
            resume = min(chunk, sample_rate * RESUME_CHUNK_MS // 1000)
            options = {
                "numberOfOutputs": 0,
                "processorOptions": {"chunkSamples": chunk, "resumeSamples": resume},
            }
            if framing is not None:  # the worklet posts whole messages (recorder.js)
                options["processorOptions"]["framing"] = list(framing)
                self.framed = True
            self._node = window.AudioWorkletNode.new(
                self._context, "layercode-recorder", ffi.to_js(options)
            )
            self._node.port.onmessage = self._proxies(
                lambda event: self._received(event.data, on_chunk)
            )
            self._source.connect(self._node)
            if self._context.state == "suspended":
                await self._context.resume()
        except JsException as error:
            self.stop()
            detail = js_error_text(error)
            raise AudioError(f"the microphone's audio processing failed: {detail}") from error
        except asyncio.CancelledError:
            self.stop()
            raise

    def _start_context(self, sample_rate):
        """The recorder's AudioContext, made now; the loading of its worklet (a JS promise,
        which may be left unawaited: its failure is not reported as unhandled)."""
        self._context = window.AudioContext.new(ffi.to_js({"sampleRate": sample_rate}))
        return handled(self._context.audioWorklet.addModule(worklet_url("recorder.js")))

    def _received(self, data, on_chunk):
        """A message from the recorder worklet: a chunk (every `chunk_ms`: few calls into JS
        here, each costs the page's main thread) or, rarely, a WAV build_wav asked for."""
        try:
            audio = data.frame if self.framed else data.audio  # a JS String object, kept as is
        except AttributeError:  # no chunk: a WAV (both interpreters raise for a missing key)
            self._wav_received(data)
            return
        on_chunk(audio, float(data.level), float(data.zcr))

    def _wav_received(self, data):
        waiting = self._wavs.get(int(data.id))  # a WAV build_wav asked for
        if waiting is not None:
            waiting[1] = data.hex
            waiting[0].set()

    def text_of(self, chunk):
        """A framed chunk's text, as `str` (a recording reads its audio back)."""
        return chunk.valueOf() if self.framed else chunk

    async def build_wav(self, frames, pieces):
        """A recording's WAV (recording.py lays it out), built by the recorder worklet on
        MicroPython: the per-sample work is a loop in Python there (`./dev bench recording`).
        The request carries an id, the reply names it, and the file crosses as hex
        (`bytes.fromhex` runs in C; copying a typed array into bytes, element by element).
        None when the worklet is not running or stops first, and on Pyodide (its slices do the
        work in C, faster than the trip to JS and back): the caller builds it in Python."""
        if not MICROPYTHON or self._node is None:
            return None
        self._next_id += 1
        request = self._next_id
        waiting = self._wavs[request] = [asyncio.Event(), None]
        message = {"type": "wav", "id": request, "frames": frames, "pieces": pieces}
        self._node.port.postMessage(ffi.to_js(message))
        try:
            await waiting[0].wait()
        finally:
            self._wavs.pop(request, None)
        parts = waiting[1]
        if parts is None:
            return None
        parts = [str(parts[i]) for i in range(int(parts.length))]
        data = bytearray(sum(len(part) for part in parts) // 2)
        start = 0
        for part in parts:  # into one bytearray: a copy into `bytes` would need twice the memory
            end = start + len(part) // 2
            data[start:end] = bytes.fromhex(part)
            start = end
        return data

    def stop(self):
        for waiting in self._wavs.values():  # build_wav's caller builds the file in Python
            waiting[0].set()
        if self._stream is not None:
            for track in self._stream.getTracks():
                track.stop()
            self._stream = None
        if self._node is not None:
            self._node.port.onmessage = None
            self._node.disconnect()
            self._node = None
        if self._source is not None:
            self._source.disconnect()
            self._source = None
        if self._context is not None:
            self._context.close()
            self._context = None
        self._proxies.destroy()


class BrowserPlayer:
    """The agent's voice: an AudioContext at 16 kHz, the player worklet, its node.

    Made in two steps so the first can come before the user's click: `prepare()` creates the
    context and starts loading the worklet (a JS promise, nothing awaited: the compile runs off
    the main thread), `start()` awaits that, makes the node and resumes the context. A context
    created before a user gesture starts suspended (the autoplay policy); one that did start is
    suspended at once, so a prepared player is silent and idle, whatever the browser's policy,
    until `start()`. `close()` releases it in either step.
    """

    def __init__(self):
        self.level = 0.0
        self._proxies = Proxies()
        self._context = self._node = None
        self._loading = None  # the worklet's addModule promise, from prepare()
        self._failed = None  # what prepare() raised, raised again by start()
        self._idled = False  # prepare() suspended the context: start() resumes it
        self._stopped = {}  # interrupt id -> on_stopped, until the audio thread answers
        self._next_id = 0

    def prepare(self, sample_rate, idle=True):
        """Create the context and start loading the worklet. Never raises: a failure is kept
        and raised by `start()`, as opening the player at connect raised it. With `idle` the
        context is suspended at once (one made before a gesture is anyway; one the page's
        policy let start is stopped, not left rendering silence until connect)."""
        try:
            require_audio_worklet()
            self._context = window.AudioContext.new(ffi.to_js({"sampleRate": sample_rate}))
            if idle:
                self._idled = True
                handled(self._context.suspend())
            self._loading = handled(self._context.audioWorklet.addModule(worklet_url("player.js")))
        except Exception as error:  # not secure, no AudioWorklet, no output, no worklet file
            self.close()
            self._failed = error

    def resume(self):
        """Ask the prepared context to run, now: connect() calls this in the click's own turn,
        so the user gesture is current where a browser wants it to be (Chrome remembers one
        for the page; Safari, for a moment)."""
        if self._context is not None:
            handled(self._context.resume())

    async def start(self, on_drained, on_started=None):
        def handle(event):
            data = event.data
            kind = data.type
            if kind == "level":
                self.level = float(data.level)
            elif kind == "drained":
                on_drained(js_string(data.deltaId))
            elif kind == "interrupted":
                on_stopped = self._stopped.pop(int(data.id), None)
                if on_stopped is not None:
                    on_stopped(js_string(data.turnId), js_string(data.deltaId), int(data.playedMs))
            elif kind == "started" and on_started is not None:
                on_started(js_string(data.turnId))

        failed = self._failed
        if isinstance(failed, LayercodeError):
            raise failed
        if failed is not None:
            raise AudioError(f"audio playback could not start: {js_error_text(failed)}") from failed
        if self._context is None:
            raise AudioError("audio playback could not start: the player was closed")
        try:
            await self._loading
            self._node = window.AudioWorkletNode.new(
                self._context, "layercode-player", ffi.to_js({"outputChannelCount": [1]})
            )
            self._node.port.onmessage = self._proxies(handle)
            self._node.connect(self._context.destination)
            # Idled: resumed whatever `state` says (it may not yet show the suspend asked for).
            if self._idled or self._context.state == "suspended":
                await self._context.resume()
        except JsException as error:
            self.close()
            raise AudioError(f"audio playback could not start: {js_error_text(error)}") from error
        except asyncio.CancelledError:
            self.close()
            raise

    def play(self, audio, turn_id, delta_id=None):
        """Queue base64 PCM16 (the worklet decodes it on the audio thread)."""
        if self._node is None or not audio:
            return
        message = {"type": "audio", "audio": audio, "turnId": turn_id, "deltaId": delta_id}
        self._node.port.postMessage(ffi.to_js(message))

    def interrupt(self, on_stopped=None):
        """Stop now; `on_stopped(turn_id, delta_id, played_ms)` once the audio thread says
        where (the request carries an id, the reply names it)."""
        if self._node is not None:
            message = {"type": "interrupt"}
            if on_stopped is not None:
                self._next_id += 1
                self._stopped[self._next_id] = on_stopped
                message["id"] = self._next_id
            self._node.port.postMessage(ffi.to_js(message))
        self.level = 0.0

    async def set_output_device(self, device_id):
        """Play on this output (None: the system default) through `AudioContext.setSinkId`."""
        if self._context is None:
            return
        try:
            await self._context.setSinkId(device_id or "")
        except JsException as error:
            name = js_error_name(error)
            if "NotFound" in name:
                raise OutputDeviceNotFound(
                    f"no audio output {device_id!r}: choose one from list_output_devices()"
                ) from error
            detail = js_error_text(error)
            raise AudioError(f"the audio output could not change: {detail}") from error

    def close(self):
        if self._node is not None:
            self._node.port.onmessage = None
            self._node.disconnect()
            self._node = None
        if self._context is not None:
            self._context.close()
            self._context = None
        self._proxies.destroy()
        self._stopped = {}
        self.level = 0.0


def media_devices():
    if not window.isSecureContext:
        raise InsecureContextError(
            f"{window.location.origin} is not a secure context: the browser lists no devices "
            "there. Open the page over HTTPS or from localhost"
        )
    return window.navigator.mediaDevices


def input_devices(infos, kind="audioinput"):
    """MediaDeviceInfo list → dicts of the audio inputs (or outputs), the SDK's `default` flag
    set."""
    devices = []
    for info in infos:
        if info.kind != kind:
            continue
        device_id = js_string(info.deviceId) or ""
        devices.append(
            {
                "deviceId": device_id,
                "device_id": device_id,
                "groupId": js_string(info.groupId) or "",
                "kind": kind,
                "label": js_string(info.label) or "",
                "default": device_id == "default",
            }
        )
    if devices and not any(d["default"] for d in devices):
        devices[0]["default"] = True
    return devices


class PageBrowser:
    """The `Browser` port (ports.py) for a PyScript page, on Pyodide or MicroPython."""

    @property
    def secure_context(self):
        return bool(window.isSecureContext)

    @property
    def origin(self):
        return js_string(window.location.origin) or ""

    @property
    def can_choose_output(self):
        return has(window, "AudioContext") and has(window.AudioContext.prototype, "setSinkId")

    def now(self):
        return float(window.performance.now())

    def decode_base64(self, text):
        """Base64 → bytes for a recording's WAV built in Python (no microphone worklet left to
        build it). On MicroPython by the browser (`Uint8Array.fromBase64`, Chrome 140+, with
        `toHex`): its `binascii` is pure Python there, and the WAV took eleven times as long
        with it (`./dev bench recording`). Pyodide's `binascii` is C: faster than crossing to
        JS and back."""
        if MICROPYTHON and has(window.Uint8Array.prototype, "toHex"):
            return python_bytes(window.Uint8Array.fromBase64(text))
        return binascii.a2b_base64(text.encode())

    async def post_json(self, url, body):
        options = {
            "method": "POST",
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps(body),
        }
        try:
            response = await window.fetch(url, ffi.to_js(options))
            return int(response.status), await response.text()
        except JsException as error:  # fetch rejects with a TypeError when unreachable
            raise OSError(js_error_text(error)) from error

    async def open_socket(self, url, on_message, on_close):
        return await BrowserSocket.open(url, on_message, on_close)

    async def open_microphone(self, sample_rate, chunk_ms, on_chunk, device_id=None, framing=None):
        microphone = BrowserMicrophone()
        await microphone.start(sample_rate, chunk_ms, on_chunk, device_id, framing)
        return microphone

    async def list_input_devices(self, request_permission=False, kind="audioinput"):
        media = media_devices()
        if request_permission:
            stream = await media.getUserMedia(ffi.to_js({"audio": True}))
            for track in stream.getTracks():
                track.stop()
        return input_devices(await media.enumerateDevices(), kind)

    async def list_output_devices(self, request_permission=False):
        return await self.list_input_devices(request_permission, "audiooutput")

    def watch_devices(self, on_change, kind="audioinput"):
        """One report at a time, referenced while it runs; a change during one makes it list the
        devices again, so the newest list is the last one reported."""
        media = media_devices()
        proxies = Proxies()
        state = {"watching": True, "again": False, "task": None}

        async def report():
            try:
                while state["watching"]:
                    state["again"] = False
                    devices = input_devices(await media.enumerateDevices(), kind)
                    if state["watching"] and not state["again"]:
                        on_change(devices)
                        return
            finally:
                state["task"] = None

        def changed(event=None):
            state["again"] = True
            if state["task"] is None:
                state["task"] = asyncio.create_task(report())

        listener = proxies(changed)
        media.addEventListener("devicechange", listener)
        changed()

        def stop():
            if state["watching"]:
                state["watching"] = False
                media.removeEventListener("devicechange", listener)
                call_soon(proxies.destroy)

        return stop

    def prepare_player(self, sample_rate):
        """A player whose context and worklet are on their way from now (BrowserPlayer)."""
        player = BrowserPlayer()
        player.prepare(sample_rate)
        return player

    async def open_player(self, sample_rate, on_drained, on_started=None):
        player = BrowserPlayer()
        player.prepare(sample_rate, idle=False)  # started at once: nothing to idle
        await player.start(on_drained, on_started)
        return player
