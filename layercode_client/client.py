"""`LayercodeClient`: the seed's browser SDK, in Python.

One session at a time: `connect()` authorizes through the app's backend, opens the WebSocket,
starts the microphone and the player, and reports through callbacks; `disconnect()` (or a close
from the server) undoes all of it, once. Browser access goes through a `Browser` (ports.py), so
this state machine runs in plain CPython under test.

Statuses: `disconnected` → `connecting` → `connected` → `disconnected`, or `error` when a step
fails or the connection drops abnormally.

Written in the subset CPython, Pyodide and MicroPython share (compat.py says what that means).
"""

import asyncio
import collections
import json
import logging

from . import protocol as p
from .compat import awaitable_of, is_awaitable, is_base64, quote
from .errors import (
    AuthorizationError,
    ConnectionClosed,
    InvalidStateError,
    LayercodeError,
    ProtocolError,
    UnknownMessageType,
)
from .options import ClientOptions

log = logging.getLogger("layercode_client")

DISCONNECTED = "disconnected"
CONNECTING = "connecting"
CONNECTED = "connected"
ERROR = "error"
STATUSES = (DISCONNECTED, CONNECTING, CONNECTED, ERROR)

NORMAL_CLOSES = (p.CloseCode.NORMAL, 1001, 1005)
RUNNING = set()  # every Work not yet ended: CPython's loop keeps only weak task references


class ServerError(LayercodeError):
    """The pipeline reported a failed turn or a malformed frame; the session goes on."""

    code = "server_error"

    def __init__(self, code, message, turn_id=None):
        super().__init__(message, code=code)
        self.turn_id = turn_id


class Work:
    """A piece of work that starts now and that any number of callers may await.

    What `connect()` and `disconnect()` return. Awaiting it waits for the end and raises the
    error the work ended with; nobody has to await it (its error was reported through
    `on_error`). A caller cancelled while waiting does not cancel the work; `cancel()` does.
    (The portable stand-in for a task behind `asyncio.shield`: MicroPython has neither shield,
    futures nor done-callbacks.)
    """

    def __init__(self, coroutine):
        self.error = None  # what the work raised
        self.cancelled = False
        self._started = False
        self._finished = asyncio.Event()
        self._task = asyncio.create_task(self._run(coroutine))
        RUNNING.add(self)

    async def _run(self, coroutine):
        self._started = True
        try:
            await coroutine
        except asyncio.CancelledError:
            self.cancelled = True
        except Exception as error:
            self.error = error
            if not isinstance(error, LayercodeError):  # a bug: on_error did not hear of it
                log.exception("a client call failed")
        finally:
            self._end()

    def _end(self):
        self._finished.set()
        RUNNING.discard(self)

    def done(self):
        return self._finished.is_set()

    def cancel(self):
        self._task.cancel()
        if not self._started:  # it never runs, so it cannot say it ended
            self.cancelled = True
            self._end()

    async def wait(self):
        """Wait for the end; raise its error. True when it ran to the end, False if cancelled."""
        await self._finished.wait()
        if self.error is not None:
            raise self.error
        return not self.cancelled

    def __await__(self):
        return awaitable_of(self.wait())

    __iter__ = __await__  # how MicroPython awaits an object


async def side_by_side(*coroutines):
    """Run coroutines concurrently and wait for all of them; raise the first one's error.

    Unlike a bare `gather`, nothing is still running when an error comes out, so whatever the
    others opened has been kept (see `_keep`) and the caller's teardown releases it.
    """
    results = await asyncio.gather(*coroutines, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


class LayercodeClient:
    def __init__(self, options=None, *, browser=None, **kw):
        self.options = ClientOptions.build(options, **kw)
        self._browser = browser  # the Browser port (ports.py); the real one by default
        self.session_id = self.options.session_id
        self.config = None  # the session's protocol.SessionConfig, once authorized
        self._status = DISCONNECTED
        self._socket = None
        self._microphone = None
        self._player = None
        self._connecting = None  # the Work of the connect in progress
        self._tasks = set()  # background work, cancelled on teardown
        self._user_level = 0.0
        self._user_level_age = 0
        self._agent_turn_id = None
        self._dropped_turns = set()
        self._last_delta_id = None
        self._push_to_talk_held = False
        self._preroll = self._new_preroll()
        self._closing = False
        self._closed_while_connecting = None

    # -- readable state ------------------------------------------------------------------------

    @property
    def status(self):
        return self._status

    @property
    def user_audio_amplitude(self):
        return self._user_level if self._status == CONNECTED else 0.0

    @property
    def agent_audio_amplitude(self):
        if self._status != CONNECTED or self._player is None:
            return 0.0
        return max(0.0, min(1.0, self._player.level))

    @property
    def push_to_talk(self):
        return bool(self.config and self.config.push_to_talk)

    # The seed's camelCase names.
    @property
    def sessionId(self):
        return self.session_id

    @property
    def userAudioAmplitude(self):
        return self.user_audio_amplitude

    @property
    def agentAudioAmplitude(self):
        return self.agent_audio_amplitude

    # -- connect ---------------------------------------------------------------------------------

    def connect(self):
        """Start a session. While one is starting or running, this starts no second one.

        Like the seed's promise, the work starts at once: `client.connect()` alone connects, and
        `await client.connect()` also waits, then raises the `LayercodeError` that stopped it
        (also passed to `on_error`). When `disconnect()` interrupts it, it returns quietly.
        """
        return Work(self._connect_once())

    async def _connect_once(self):
        if self._status == CONNECTED:
            return
        if self._connecting is None or self._connecting.done():
            self._connecting = Work(self._connect())
        await self._connecting.wait()  # False when disconnect() ended it: return quietly

    async def _connect(self):
        self._closing = False
        self._closed_while_connecting = None
        self._set_status(CONNECTING)
        try:
            # Side by side where nothing depends on the other: the player (its AudioContext and
            # worklet) starts while the backend authorizes; the socket opens while the
            # microphone starts. The player is ready before the socket opens: a pipeline may
            # speak at once.
            browser = self._browser_()
            player = browser.open_player(p.OUTPUT_SAMPLE_RATE, self._on_playback_drained)
            auth, _ = await side_by_side(self._authorize(), self._keep("_player", player))
            self.session_id = auth.session_id or self.session_id
            self.config = auth.config  # an unknown trigger was refused while parsing
            url = self.options.websocket_url or auth.websocket_url or self._cloud_url()
            separator = "&" if "?" in url else "?"
            key = quote(auth.client_session_key)
            socket = browser.open_socket(
                f"{url}{separator}client_session_key={key}", self._on_frame, self._on_socket_closed
            )
            microphone = browser.open_microphone(
                auth.config.input_sample_rate, self.options.chunk_ms, self._on_microphone
            )
            await side_by_side(self._keep("_socket", socket), self._keep("_microphone", microphone))
            if self._closed_while_connecting is not None:
                raise self._closed_while_connecting
            self._send(p.ClientReady())
            self._own(self._report_amplitudes(), "amplitudes")
        except LayercodeError as error:
            await self._fail(error)
            raise
        except asyncio.CancelledError:
            await self._teardown()
            self._set_status(DISCONNECTED)
            raise
        except Exception as error:  # a bug or an unexpected browser failure: still clean up
            wrapped = LayercodeError(f"connecting failed unexpectedly: {error!r}")
            await self._fail(wrapped)
            raise wrapped from error
        self._set_status(CONNECTED)
        self._call("on_connect", {"session_id": self.session_id, "sessionId": self.session_id})

    async def _keep(self, name, opening):
        """Await a browser resource and own it at once, so a teardown releases it whatever else
        failed side by side with it."""
        setattr(self, name, await opening)

    def _browser_(self):
        if self._browser is None:
            from .browser import PageBrowser  # only importable in a PyScript page

            self._browser = PageBrowser()
        return self._browser

    def _cloud_url(self):
        return p.CLOUD_PIPELINE_WEBSOCKET_URL

    async def _authorize(self):
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

    def disconnect(self):
        """End the session: microphone, audio, socket and tasks all stopped; once.

        Starts at once, like `connect()`; await it to wait until everything is released.
        """
        return Work(self._disconnect())

    async def _disconnect(self):
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
            try:
                await self._connecting.wait()
            except LayercodeError:
                pass  # reported through on_error already
        if self._status == DISCONNECTED and self._socket is None:
            return
        await self._end_session(error=None)

    async def _end_session(self, error):
        was_live = self._status in (CONNECTING, CONNECTED)
        await self._teardown()
        if was_live:
            self._call("on_disconnect")
        if error is not None:
            self._set_status(ERROR)
            self._call("on_error", error)
        else:
            self._set_status(DISCONNECTED)

    async def _teardown(self):
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
        self._preroll = self._new_preroll()
        self._dropped_turns.clear()
        self._agent_turn_id = None
        self._call("on_user_amplitude_change", 0.0)
        self._call("on_agent_amplitude_change", 0.0)

    async def _fail(self, error):
        await self._teardown()
        self._set_status(ERROR)
        self._call("on_error", error)

    def _on_socket_closed(self, code, reason):
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

    def trigger_user_turn_started(self):
        """Push-to-talk pressed: the agent stops, the user's audio (with pre-roll) flows."""
        self._require_push_to_talk()
        if self._push_to_talk_held:
            return
        self._push_to_talk_held = True
        self._interrupt_agent()
        self._send(p.TriggerTurnStart(role="user"))
        while self._preroll:
            self._send_audio(self._preroll.popleft())

    def trigger_user_turn_finished(self):
        """Push-to-talk released: the turn is over."""
        self._require_push_to_talk()
        if not self._push_to_talk_held:
            return
        self._push_to_talk_held = False
        self._send(p.TriggerTurnEnd(role="user"))

    triggerUserTurnStarted = trigger_user_turn_started
    triggerUserTurnFinished = trigger_user_turn_finished

    def _require_push_to_talk(self):
        if self._status != CONNECTED:
            raise InvalidStateError("not connected: call connect() first")
        if not self.push_to_talk:
            raise InvalidStateError("this session's turns are automatic, not push-to-talk")

    # -- audio -----------------------------------------------------------------------------------

    def _new_preroll(self):
        """Push-to-talk's pre-roll: the newest chunks only (the oldest fall out)."""
        return collections.deque((), max(1, self.options.preroll_ms // self.options.chunk_ms))

    def _on_microphone(self, audio, level):
        """A chunk from the microphone: base64 PCM16 at the session's rate, and its level."""
        self._user_level = max(0.0, min(1.0, level))
        self._user_level_age = 0
        if self._socket is None:
            return
        if self.push_to_talk and not self._push_to_talk_held:
            self._preroll.append(audio)
            return
        self._send_audio(audio)

    def _send_audio(self, audio):
        self._send(p.ClientAudio(content=audio))

    def _play(self, message):
        if self._player is None or message.turn_id in self._dropped_turns:
            return
        if not is_base64(message.content):  # checked here; the player worklet decodes it
            self._report(ProtocolError("response.audio is not base64"))
            return
        self._agent_turn_id = message.turn_id
        self._last_delta_id = message.delta_id
        self._player.play(message.content, message.turn_id, message.delta_id)

    def _interrupt_agent(self):
        """Stop the agent's voice now; later audio of the same turn is dropped too."""
        if self._agent_turn_id is not None:
            self._dropped_turns.add(self._agent_turn_id)
        if self._player is not None:
            self._player.interrupt()

    def _on_playback_drained(self, last_delta_id=None):
        """The player ran dry: tell the pipeline which chunk it finished last."""
        played = last_delta_id or self._last_delta_id
        self._send(p.ReplayFinished(reason="completed", last_delta_id_played=played))

    async def _report_amplitudes(self):
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

    def _on_frame(self, frame):
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

    def _may_be_interrupted(self):
        return self.config is None or self.config.can_interrupt or self.push_to_talk

    def _report(self, error):
        log.warning("%s: %s", error.code, error.message)
        self._call("on_error", error)

    # -- plumbing --------------------------------------------------------------------------------

    def _send(self, message):
        if self._socket is not None:
            self._socket.send(message.encode())

    def _set_status(self, status):
        if status != self._status:
            self._status = status
            self._call("on_status_change", status)

    def _own(self, coroutine, name):
        """Run background work that teardown cancels; referenced until it ends."""

        async def owned():
            try:
                await coroutine
            except asyncio.CancelledError:
                pass
            except Exception:  # a bug: no callback would ever hear of it
                log.exception("the client's %s task failed", name)
            finally:
                self._tasks.discard(task)

        task = asyncio.create_task(owned())
        self._tasks.add(task)
        return task

    def _call(self, name, *args):
        """Run a user callback; a coroutine runs as an owned task. Its errors are logged."""
        callback = getattr(self.options, name)
        if callback is None:
            return
        try:
            result = callback(*args)
        except Exception:
            log.exception("the %s callback failed", name)
            return
        if is_awaitable(result):
            self._own(self._await_callback(name, result), name)

    @staticmethod
    async def _await_callback(name, result):
        try:
            await result
        except Exception:
            log.exception("the %s callback failed", name)
