"""`LayercodeClient`: the seed's browser SDK, in Python.

One session at a time: `connect()` authorizes through the app's backend, opens the WebSocket,
starts the microphone and the player, and reports through callbacks; `disconnect()` (or a close
from the server) undoes all of it, once. Browser access goes through a `Browser` (ports.py), so
this state machine runs in plain CPython under test.

Statuses: `disconnected` → `connecting` → `connected` → `disconnected`, or `error` when a step
fails or the connection drops abnormally.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import inspect
import json
import logging
from typing import Any
from urllib.parse import quote

from . import protocol as p
from .errors import (
    AuthorizationError,
    ConnectionClosed,
    InvalidStateError,
    LayercodeError,
    ProtocolError,
    UnknownMessageType,
)
from .options import ClientOptions
from .ports import Browser, Microphone, Player, Socket

log = logging.getLogger("layercode_client")

NORMAL_CLOSES = {p.CloseCode.NORMAL, 1001, 1005}


class ServerError(LayercodeError):
    """The pipeline reported a failed turn or a malformed frame; the session goes on."""

    code = "server_error"

    def __init__(self, code: str, message: str, turn_id: str | None = None):
        super().__init__(message, code=code)
        self.turn_id = turn_id


class LayercodeClient:
    def __init__(self, options: dict | None = None, /, *, browser: Browser | None = None, **kw):
        self.options = ClientOptions.build(options, **kw)
        self._browser = browser
        self.session_id: str | None = self.options.session_id
        self.config: p.SessionConfig | None = None
        self._status = "disconnected"
        self._socket: Socket | None = None
        self._microphone: Microphone | None = None
        self._player: Player | None = None
        self._connecting: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()  # background work, cancelled on teardown
        self._calls: set[asyncio.Task] = set()  # connect()/disconnect() in progress
        self._user_level = 0.0
        self._user_level_age = 0
        self._agent_turn_id: str | None = None
        self._dropped_turns: set[str] = set()
        self._last_delta_id: str | None = None
        self._push_to_talk_held = False
        self._preroll: collections.deque[bytes] = collections.deque(
            maxlen=max(1, self.options.preroll_ms // self.options.chunk_ms)
        )
        self._closing = False
        self._closed_while_connecting: ConnectionClosed | None = None

    # -- readable state ------------------------------------------------------------------------

    @property
    def status(self) -> str:
        return self._status

    @property
    def user_audio_amplitude(self) -> float:
        return self._user_level if self._status == "connected" else 0.0

    @property
    def agent_audio_amplitude(self) -> float:
        if self._status != "connected" or self._player is None:
            return 0.0
        return max(0.0, min(1.0, self._player.level))

    @property
    def push_to_talk(self) -> bool:
        return bool(self.config and self.config.push_to_talk)

    # The seed's camelCase names.
    @property
    def sessionId(self) -> str | None:
        return self.session_id

    @property
    def userAudioAmplitude(self) -> float:
        return self.user_audio_amplitude

    @property
    def agentAudioAmplitude(self) -> float:
        return self.agent_audio_amplitude

    # -- connect ---------------------------------------------------------------------------------

    def connect(self) -> asyncio.Task:
        """Start a session. While one is starting or running, this starts no second one.

        Like the seed's promise, the work starts at once: `client.connect()` alone connects, and
        `await client.connect()` also waits, then raises the `LayercodeError` that stopped it
        (also passed to `on_error`). When `disconnect()` interrupts it, it returns quietly.
        """
        return self._start_call(self._connect_once())

    async def _connect_once(self) -> None:
        if self._status == "connected":
            return
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._connect())
        connecting = self._connecting
        try:
            await asyncio.shield(connecting)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if connecting.cancelled() and not (current and current.cancelling()):
                return  # disconnect() ended it
            raise

    async def _connect(self) -> None:
        self._closing = False
        self._closed_while_connecting = None
        self._set_status("connecting")
        try:
            auth = await self._authorize()
            self.session_id = auth.session_id or self.session_id
            self.config = auth.config  # an unknown trigger was refused while parsing
            url = self.options.websocket_url or auth.websocket_url or self._cloud_url()
            separator = "&" if "?" in url else "?"
            key = quote(auth.client_session_key, safe="")
            # The player first: a pipeline may speak as soon as the socket opens.
            self._player = await self._browser_().open_player(
                p.OUTPUT_SAMPLE_RATE, self._on_playback_drained
            )
            self._socket = await self._browser_().open_socket(
                f"{url}{separator}client_session_key={key}",
                self._on_frame,
                self._on_socket_closed,
            )
            self._microphone = await self._browser_().open_microphone(
                auth.config.input_sample_rate, self.options.chunk_ms, self._on_microphone
            )
            if self._closed_while_connecting is not None:
                raise self._closed_while_connecting
            self._send(p.ClientReady())
            self._own(self._report_amplitudes(), "amplitudes")
        except LayercodeError as error:
            await self._fail(error)
            raise
        except asyncio.CancelledError:
            await self._teardown()
            self._set_status("disconnected")
            raise
        except Exception as error:  # a bug or an unexpected browser failure: still clean up
            wrapped = LayercodeError(f"connecting failed unexpectedly: {error!r}")
            await self._fail(wrapped)
            raise wrapped from error
        self._set_status("connected")
        self._call("on_connect", {"session_id": self.session_id, "sessionId": self.session_id})

    def _browser_(self) -> Browser:
        if self._browser is None:
            from .browser import PyodideBrowser  # only importable inside Pyodide

            self._browser = PyodideBrowser()
        return self._browser

    def _cloud_url(self) -> str:
        return p.CLOUD_PIPELINE_WEBSOCKET_URL

    async def _authorize(self) -> p.AuthorizeResponse:
        request = p.AuthorizeRequest(
            pipeline_id=self.options.pipeline_id,
            session_id=self.session_id,
            metadata=self.options.metadata,
            input_sample_rates=list(self.options.input_sample_rates),
        )
        endpoint = self.options.authorize_session_endpoint
        try:
            status, text = await self._browser_().post_json(endpoint, request.to_json())
        except OSError as error:
            raise AuthorizationError(
                f"could not reach the authorize endpoint {endpoint}: {error}"
            ) from error
        try:
            body = json.loads(text) if text else {}
        except ValueError:
            body = None
        if not 200 <= status < 300:
            reason = body.get("error") if isinstance(body, dict) else None
            reason = reason if isinstance(reason, str) else (text or "")[:200]
            raise AuthorizationError(
                f"authorization failed (HTTP {status}): {reason}", status=status, reason=reason
            )
        try:
            return p.AuthorizeResponse.from_json(body)
        except (ProtocolError, TypeError, ValueError, AttributeError) as error:
            raise AuthorizationError(
                f"the authorize endpoint answered something unexpected: {error}", status=status
            ) from error

    # -- disconnect ------------------------------------------------------------------------------

    def disconnect(self) -> asyncio.Task:
        """End the session: microphone, audio, socket and tasks all stopped; once.

        Starts at once, like `connect()`; await it to wait until everything is released.
        """
        return self._start_call(self._disconnect())

    async def _disconnect(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, LayercodeError):
                await self._connecting
        if self._status in ("disconnected",) and self._socket is None:
            return
        await self._end_session(error=None)

    async def _end_session(self, error: LayercodeError | None) -> None:
        was_live = self._status in ("connecting", "connected")
        await self._teardown()
        if was_live:
            self._call("on_disconnect")
        if error is not None:
            self._set_status("error")
            self._call("on_error", error)
        else:
            self._set_status("disconnected")

    async def _teardown(self) -> None:
        self._closing = True
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        if self._microphone is not None:
            self._microphone.stop()
            self._microphone = None
        if self._player is not None:
            self._player.close()
            self._player = None
        if self._socket is not None:
            self._socket.close(p.CloseCode.NORMAL, "client disconnected")
            self._socket = None
        others = [t for t in self._tasks if t is not current]
        await asyncio.gather(*others, return_exceptions=True)
        self._user_level = 0.0
        self._push_to_talk_held = False
        self._preroll.clear()
        self._dropped_turns.clear()
        self._agent_turn_id = None
        self._call("on_user_amplitude_change", 0.0)
        self._call("on_agent_amplitude_change", 0.0)

    async def _fail(self, error: LayercodeError) -> None:
        await self._teardown()
        self._set_status("error")
        self._call("on_error", error)

    def _on_socket_closed(self, code: int, reason: str) -> None:
        if self._closing:
            return
        if code in NORMAL_CLOSES:
            error = None
        else:
            detail = f": {reason}" if reason else ""
            error = ConnectionClosed(
                f"the connection closed unexpectedly (code {code}){detail}",
                close_code=code,
                reason=reason,
            )
        self._socket = None  # already closed
        if self._connecting is not None and not self._connecting.done():
            # connect() is still opening the microphone: it fails with this when done.
            self._closed_while_connecting = error or ConnectionClosed(
                f"the server closed the connection while connecting (code {code})",
                close_code=code,
                reason=reason,
            )
            return
        self._own(self._end_session(error), "server-close")

    # -- push-to-talk --------------------------------------------------------------------------

    def trigger_user_turn_started(self) -> None:
        """Push-to-talk pressed: the agent stops, the user's audio (with pre-roll) flows."""
        self._require_push_to_talk()
        if self._push_to_talk_held:
            return
        self._push_to_talk_held = True
        self._interrupt_agent()
        self._send(p.TriggerTurnStart(role="user"))
        while self._preroll:
            self._send_audio(self._preroll.popleft())

    def trigger_user_turn_finished(self) -> None:
        """Push-to-talk released: the turn is over."""
        self._require_push_to_talk()
        if not self._push_to_talk_held:
            return
        self._push_to_talk_held = False
        self._send(p.TriggerTurnEnd(role="user"))

    triggerUserTurnStarted = trigger_user_turn_started
    triggerUserTurnFinished = trigger_user_turn_finished

    def _require_push_to_talk(self) -> None:
        if self._status != "connected":
            raise InvalidStateError("not connected: call connect() first")
        if not self.push_to_talk:
            raise InvalidStateError("this session's turns are automatic, not push-to-talk")

    # -- audio -----------------------------------------------------------------------------------

    def _on_microphone(self, pcm: bytes, level: float) -> None:
        self._user_level = max(0.0, min(1.0, level))
        self._user_level_age = 0
        if self._socket is None:
            return
        if self.push_to_talk and not self._push_to_talk_held:
            self._preroll.append(pcm)
            return
        self._send_audio(pcm)

    def _send_audio(self, pcm: bytes) -> None:
        self._send(p.ClientAudio(content=base64.b64encode(pcm).decode("ascii")))

    def _play(self, message: p.ResponseAudio) -> None:
        if self._player is None or message.turn_id in self._dropped_turns:
            return
        try:
            pcm = base64.b64decode(message.content, validate=True)
        except ValueError:
            self._report(ProtocolError("response.audio is not base64"))
            return
        self._agent_turn_id = message.turn_id
        self._last_delta_id = message.delta_id
        self._player.play(pcm[: len(pcm) - len(pcm) % 2], message.turn_id, message.delta_id)

    def _interrupt_agent(self) -> None:
        """Stop the agent's voice now; later audio of the same turn is dropped too."""
        if self._agent_turn_id is not None:
            self._dropped_turns.add(self._agent_turn_id)
        if self._player is not None:
            self._player.interrupt()

    def _on_playback_drained(self, last_delta_id: str | None = None) -> None:
        """The player ran dry: tell the pipeline which chunk it finished last."""
        played = last_delta_id or self._last_delta_id
        self._send(p.ReplayFinished(reason="completed", last_delta_id_played=played))

    async def _report_amplitudes(self) -> None:
        period = 1.0 / self.options.amplitude_hz
        stale_after = max(2, round(0.3 / period))  # no microphone chunk for 300 ms: silent
        while True:
            self._user_level_age += 1
            if self._user_level_age > stale_after:
                self._user_level = 0.0
            self._call("on_user_amplitude_change", self.user_audio_amplitude)
            self._call("on_agent_amplitude_change", self.agent_audio_amplitude)
            await asyncio.sleep(period)

    # -- messages from the server ----------------------------------------------------------------

    def _on_frame(self, frame: str) -> None:
        try:
            message = p.decode(frame, allowed=p.SERVER_MESSAGES)
        except UnknownMessageType as error:
            log.info("ignored a message of unknown type %r", error.message_type)
            return
        except ProtocolError as error:
            self._report(error)
            return
        if isinstance(message, p.ResponseAudio):
            self._play(message)
        elif isinstance(message, p.TurnStart):
            if message.role == "user" and self._may_be_interrupted():
                self._interrupt_agent()
            self._call("on_message", message.to_dict())
        elif isinstance(message, p.ResponseData):
            self._call("on_data_message", message.to_dict())
        elif isinstance(message, p.ErrorMessage):
            self._report(ServerError(message.code, message.message, message.turn_id))
        else:
            self._call("on_message", message.to_dict())

    def _may_be_interrupted(self) -> bool:
        return self.config is None or self.config.can_interrupt or self.push_to_talk

    def _report(self, error: LayercodeError) -> None:
        log.warning("%s: %s", error.code, error.message)
        self._call("on_error", error)

    # -- plumbing --------------------------------------------------------------------------------

    def _send(self, message: p.Message) -> None:
        if self._socket is not None:
            self._socket.send(message.encode())

    def _set_status(self, status: str) -> None:
        if status != self._status:
            self._status = status
            self._call("on_status_change", status)

    def _start_call(self, coro) -> asyncio.Task:
        """A public method's work, running now; kept referenced until it ends.

        Not cancelled by a teardown (that is its own work). Its error was reported through
        `on_error`, so one nobody awaits is retrieved here instead of logged as lost.
        """
        task = asyncio.ensure_future(coro)
        self._calls.add(task)
        task.add_done_callback(self._call_ended)
        return task

    def _call_ended(self, task: asyncio.Task) -> None:
        self._calls.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None and not isinstance(error, LayercodeError):
            log.error("a client call failed", exc_info=error)  # a bug: not seen by on_error

    def _own(self, coro, name: str) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _call(self, name: str, *args: Any) -> None:
        """Run a user callback; a coroutine runs as an owned task. Its errors are logged."""
        callback = getattr(self.options, name)
        if callback is None:
            return
        try:
            result = callback(*args)
        except Exception:
            log.exception("the %s callback failed", name)
            return
        if inspect.isawaitable(result):
            self._own(self._await_callback(name, result), name)

    @staticmethod
    async def _await_callback(name: str, result) -> None:
        try:
            await result
        except Exception:
            log.exception("the %s callback failed", name)
