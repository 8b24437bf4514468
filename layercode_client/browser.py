"""The browser, through Pyodide: fetch, WebSocket, microphone and speaker.

The only module that touches `js` and `pyodide`. Each class owns the JS objects and proxies it
creates and releases all of them when closed, so a disconnected client leaves nothing running:
no live microphone track, no running AudioContext, no proxy JS could still call.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from importlib import resources

import js
from pyodide.ffi import JsException, create_proxy, to_js
from pyodide.http import pyfetch

from .errors import (
    AudioError,
    ConnectionFailed,
    MicrophoneNotFound,
    MicrophonePermissionDenied,
)

# Voice needs Chrome's echo cancellation (the agent's voice must not come back as the user's).
MICROPHONE_CONSTRAINTS = {
    "channelCount": 1,
    "echoCancellation": True,
    "noiseSuppression": True,
    "autoGainControl": True,
}


def js_object(value):
    return to_js(value, dict_converter=js.Object.fromEntries)


def worklet_url(name: str) -> str:
    """A Blob URL for a worklet shipped inside this package: nothing fetched from elsewhere."""
    source = resources.files("layercode_client").joinpath("worklets", name).read_text()
    blob = js.Blob.new(to_js([source]), js_object({"type": "text/javascript"}))
    return js.URL.createObjectURL(blob)


class Proxies:
    """Every Python callable handed to JS, so all can be destroyed together."""

    def __init__(self) -> None:
        self._proxies: list = []

    def __call__(self, function: Callable):
        proxy = create_proxy(function)
        self._proxies.append(proxy)
        return proxy

    def destroy(self) -> None:
        for proxy in self._proxies:
            proxy.destroy()
        self._proxies.clear()


def stop_when_granted(request) -> None:
    """Stop the tracks of a getUserMedia request nobody awaits any more, if it is granted."""
    loop = asyncio.get_event_loop()
    proxies = Proxies()

    def settled(stream=None) -> None:
        if stream is not None and hasattr(stream, "getTracks"):
            for track in stream.getTracks():
                track.stop()
        loop.call_soon(proxies.destroy)  # not while JS is still inside these proxies

    request.then(proxies(settled), proxies(settled))


class BrowserSocket:
    def __init__(self, ws, proxies: Proxies):
        self._ws = ws
        self._proxies = proxies

    @classmethod
    async def open(
        cls, url: str, on_message: Callable[[str], None], on_close: Callable[[int, str], None]
    ) -> BrowserSocket:
        loop = asyncio.get_running_loop()
        opened: asyncio.Future = loop.create_future()
        proxies = Proxies()
        try:
            ws = js.WebSocket.new(url)
        except JsException as error:
            raise ConnectionFailed(f"could not open the WebSocket: {error}") from error
        socket = cls(ws, proxies)

        def handle_open(event) -> None:
            if not opened.done():
                opened.set_result(None)

        def handle_message(event) -> None:
            if isinstance(event.data, str):
                on_message(event.data)

        def handle_close(event) -> None:
            if not opened.done():
                reason = f": {event.reason}" if event.reason else ""
                opened.set_exception(
                    ConnectionFailed(f"the voice connection failed (code {event.code}){reason}")
                )
            else:
                on_close(event.code, event.reason)
            loop.call_soon(socket._release)  # not while JS is still inside this proxy

        ws.onopen = proxies(handle_open)
        ws.onmessage = proxies(handle_message)
        ws.onclose = proxies(handle_close)
        try:
            await opened
        except asyncio.CancelledError:  # disconnect() while still connecting
            socket.close(1000, "client disconnected")
            raise
        return socket

    def send(self, text: str) -> None:
        if self._ws is not None and self._ws.readyState == 1:
            self._ws.send(text)

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self._ws is not None and self._ws.readyState <= 1:
            self._ws.close(code, reason)
        self._release()

    def _release(self) -> None:
        if self._ws is not None:
            self._ws.onopen = self._ws.onmessage = self._ws.onclose = None
            self._ws = None
        self._proxies.destroy()


class BrowserMicrophone:
    def __init__(self):
        self._proxies = Proxies()
        self._stream = self._context = self._source = self._node = None

    async def start(
        self, sample_rate: int, chunk_ms: int, on_chunk: Callable[[bytes, float], None]
    ) -> None:
        request = js.navigator.mediaDevices.getUserMedia(
            js_object({"audio": MICROPHONE_CONSTRAINTS})
        )
        try:
            self._stream = await request
        except asyncio.CancelledError:  # disconnect() while the browser was still asking
            stop_when_granted(request)
            raise
        except JsException as error:
            name = getattr(error, "name", "") or str(error)
            if "NotAllowed" in name or "Security" in name:
                raise MicrophonePermissionDenied(
                    "microphone access was denied: allow it in the browser to talk"
                ) from error
            if "NotFound" in name or "Overconstrained" in name or "NotReadable" in name:
                raise MicrophoneNotFound(
                    "no usable microphone was found: connect one and try again"
                ) from error
            raise AudioError(f"the microphone could not start: {error}") from error
        try:
            self._context = js.AudioContext.new(js_object({"sampleRate": sample_rate}))
            await self._context.audioWorklet.addModule(worklet_url("recorder.js"))
            self._source = self._context.createMediaStreamSource(self._stream)
            options = {
                "numberOfOutputs": 0,
                "processorOptions": {"chunkSamples": sample_rate * chunk_ms // 1000},
            }
            self._node = js.AudioWorkletNode.new(
                self._context, "layercode-recorder", js_object(options)
            )
            self._node.port.onmessage = self._proxies(
                lambda event: on_chunk(event.data.pcm.to_bytes(), float(event.data.level))
            )
            self._source.connect(self._node)
            if self._context.state == "suspended":
                await self._context.resume()
        except JsException as error:
            self.stop()
            raise AudioError(f"the microphone's audio processing failed: {error}") from error
        except asyncio.CancelledError:
            self.stop()
            raise

    def stop(self) -> None:
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
    def __init__(self):
        self.level = 0.0
        self._proxies = Proxies()
        self._context = self._node = None

    async def start(self, sample_rate: int, on_drained: Callable[[str | None], None]) -> None:
        def handle(event) -> None:
            if event.data.type == "level":
                self.level = float(event.data.level)
            elif event.data.type == "drained":
                delta_id = getattr(event.data, "deltaId", None)
                on_drained(delta_id if isinstance(delta_id, str) else None)

        try:
            self._context = js.AudioContext.new(js_object({"sampleRate": sample_rate}))
            await self._context.audioWorklet.addModule(worklet_url("player.js"))
            self._node = js.AudioWorkletNode.new(
                self._context, "layercode-player", js_object({"outputChannelCount": [1]})
            )
            self._node.port.onmessage = self._proxies(handle)
            self._node.connect(self._context.destination)
            if self._context.state == "suspended":
                await self._context.resume()
        except JsException as error:
            self.close()
            raise AudioError(f"audio playback could not start: {error}") from error
        except asyncio.CancelledError:
            self.close()
            raise

    def play(self, pcm: bytes, turn_id: str | None, delta_id: str | None = None) -> None:
        if self._node is None or not pcm:
            return
        array = js.Uint8Array.new(len(pcm))  # a copy with its own buffer, safe to transfer
        array.assign(pcm)
        buffer = array.buffer
        self._node.port.postMessage(
            js_object({"type": "audio", "pcm": buffer, "turnId": turn_id, "deltaId": delta_id}),
            to_js([buffer]),
        )

    def interrupt(self) -> None:
        if self._node is not None:
            self._node.port.postMessage(js_object({"type": "interrupt"}))
        self.level = 0.0

    def close(self) -> None:
        if self._node is not None:
            self._node.port.onmessage = None
            self._node.disconnect()
            self._node = None
        if self._context is not None:
            self._context.close()
            self._context = None
        self._proxies.destroy()
        self.level = 0.0


class PyodideBrowser:
    """The `Browser` port (ports.py) for a page running Pyodide on its main thread."""

    async def post_json(self, url: str, body: dict) -> tuple[int, str]:
        try:
            response = await pyfetch(
                url,
                method="POST",
                headers={"Content-Type": "application/json"},
                body=json.dumps(body),
            )
            return response.status, await response.string()
        except JsException as error:  # fetch rejects with a TypeError when unreachable
            raise OSError(str(error)) from error

    async def open_socket(self, url, on_message, on_close) -> BrowserSocket:
        return await BrowserSocket.open(url, on_message, on_close)

    async def open_microphone(self, sample_rate, chunk_ms, on_chunk) -> BrowserMicrophone:
        microphone = BrowserMicrophone()
        await microphone.start(sample_rate, chunk_ms, on_chunk)
        return microphone

    async def open_player(self, sample_rate, on_drained) -> BrowserPlayer:
        player = BrowserPlayer()
        await player.start(sample_rate, on_drained)
        return player
