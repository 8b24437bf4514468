"""`LayercodeClient`: the seed's browser SDK, in Python.

One session at a time: `connect()` authorizes through the app's backend, opens the WebSocket,
starts the microphone and the player, and reports through callbacks; `disconnect()` (or a close
from the server) undoes all of it, once. Browser access goes through a `Browser` (ports.py), so
this state machine runs in plain CPython under test.

Statuses: `disconnected` → `connecting` → `connected` → `disconnected`, or `error` when a step
fails or the connection ends abnormally. An agent that hangs up (close code 4003) ends the
session normally: `disconnected`, its reason in `disconnect_reason`.

Reconnect. When a live session's socket drops with a code of `CloseCode.RECONNECT` (1001, 1006,
1011, 1012, 1013), the status goes `reconnecting`: the client authorizes again with the same
conversation id and resume token and opens a new socket, waiting `reconnect_delay_ms` before the
first attempt and twice as long before each next one, up to `reconnect_max_delay_ms`, for at
most `reconnect_attempts` attempts; then `connected` again (`on_reconnected`), or `error`. The
microphone and the player stay open throughout: no permission is asked again. A key the server
refuses (4001, 4002) is authorized again once, at once. Against this project's pipeline every
`response.data` carries a `seq`: the client delivers each one once, and on a resumed socket
first names the last one it delivered (`client.resume`), so the server sends what it missed
(docs/protocol.md, "Reconnecting").

Every public name of `@layercode/js-sdk` 2.8.10's `LayercodeClient` is here under its camelCase
name and a snake_case one; methods the SDK makes promises return awaitables (docs/client.md).

Written in the subset CPython, Pyodide and MicroPython share (compat.py says what that means).
"""

import asyncio
import collections
import json
import logging
import time

from . import protocol as p
from .compat import awaitable_of, is_awaitable, is_base64, quote
from .devices import DEFAULT_DEVICE, InputDevices
from .errors import (
    AuthorizationError,
    BrowserUnsupported,
    ConnectionClosed,
    InsecureContextError,
    InvalidArgument,
    InvalidStateError,
    LayercodeError,
    ProtocolError,
    UnknownMessageType,
)
from .metrics import TurnMetrics
from .options import ClientOptions
from .recording import Recording
from .vad import VAD_END, VAD_START, VoiceGate

log = logging.getLogger("layercode_client")

DISCONNECTED = "disconnected"
CONNECTING = "connecting"
CONNECTED = "connected"
RECONNECTING = "reconnecting"
ERROR = "error"
STATUSES = (DISCONNECTED, CONNECTING, CONNECTED, RECONNECTING, ERROR)

NORMAL_CLOSES = (p.CloseCode.NORMAL, 1001, 1005, p.CloseCode.SESSION_ENDED)
RUNNING = set()  # every Work not yet ended: CPython's loop keeps only weak task references
# response.data seqs delivered beyond a gap, at most: a gap still open past this many (its
# message pruned from the server's store) is given up, the oldest first.
MAX_DATA_AHEAD = 256
# The microphone's chunks come as whole `client.audio` messages where the browser can frame them
# (protocol.py's `ClientAudio.framing`): the per-chunk path never builds JSON in Python.
AUDIO_FRAMING = p.ClientAudio.framing()


class ServerError(LayercodeError):
    """The pipeline reported a failed turn or a malformed frame; the session goes on."""

    code = "server_error"

    def __init__(self, code, message, turn_id=None):
        super().__init__(message, code=code)
        self.turn_id = turn_id


class Work:
    """A piece of work that starts now and that any number of callers may await.

    What `connect()`, `disconnect()` and the other methods the SDK makes promises return.
    Awaiting it waits for the end and gives the work's result (None when cancelled), or raises
    the error the work ended with; nobody has to await it (its error was reported through
    `on_error`). A caller cancelled while waiting does not cancel the work; `cancel()` does.
    (The portable stand-in for a task behind `asyncio.shield`: MicroPython has neither shield,
    futures nor done-callbacks.)
    """

    def __init__(self, coroutine):
        self.error = None  # what the work raised
        self.result = None  # what it returned
        self.cancelled = False
        self._started = False
        self._finished = asyncio.Event()
        self._task = asyncio.create_task(self._run(coroutine))
        RUNNING.add(self)

    async def _run(self, coroutine):
        self._started = True
        try:
            self.result = await coroutine
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
        """Wait for the end; raise its error, or give its result."""
        await self._finished.wait()
        if self.error is not None:
            raise self.error
        return self.result

    def __await__(self):
        return awaitable_of(self.wait())

    __iter__ = __await__  # how MicroPython awaits an object


class Done:
    """An awaitable that is already finished: what a method the SDK makes a promise returns when
    its work is done at once (awaiting it works; not awaiting it loses nothing)."""

    def __init__(self, value=None):
        self.value = value

    async def _result(self):
        return self.value

    def __await__(self):
        return awaitable_of(self._result())

    __iter__ = __await__


class PreparedPlayer:
    """The player made ahead of `connect()`: what `prepare_audio()` holds.

    A first connect used to make the player's AudioContext (its constructor opens the audio
    output, holding the main thread 3-8 ms, far longer on a page's first context under load)
    and load its worklet (`addModule`, 18-24 ms) after the click, beside the authorization and
    longer than it. Made when the page is ready, they are done by the click: the connect only
    resumes the context (one made before a user gesture starts suspended; the browser's player
    idles it either way). docs/startup.md has the measurements.

    This one object owns the prepared player until a connect takes it (the session then owns
    it, as a player opened at connect) or `close()` releases it: the client closes it with
    every teardown and every `disconnect()`, so a disconnected client holds no audio the page
    did not ask for again. (Here, not in a module of its own: the MicroPython page fetches each
    module of the package as a file.)
    """

    def __init__(self):
        self._player = None  # a ports.Player not yet started, or None

    def prepare(self, browser, sample_rate):
        """Begin a player now, where the browser can (`Browser.prepare_player`); once."""
        prepare = getattr(browser, "prepare_player", None)
        if self._player is None and prepare is not None:
            self._player = prepare(sample_rate)

    def resume(self):
        """Let it run: connect() calls this at once, inside the user's gesture."""
        if self._player is not None:
            self._player.resume()

    def take(self):
        """The prepared player, now the caller's to start and close; None if there is none."""
        player, self._player = self._player, None
        return player

    def close(self):
        player, self._player = self._player, None
        if player is not None:
            player.close()


def is_json(value, depth=0):
    """True for what JSON can carry. Checked by hand: MicroPython's `json.dumps` writes any
    object's repr instead of refusing it."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return True
    if depth > 100:
        return False
    if isinstance(value, (list, tuple)):
        return all(is_json(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_json(v, depth + 1) for k, v in value.items())
    return False


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
        self.session_id = self.options.conversation_id  # the conversation, kept to resume it
        self.resume_token = self.options.resume_token  # its proof on this project's server
        self.config = None  # the session's protocol.SessionConfig, once authorized
        self._ours = False  # the pipeline is this project's: it takes our protocol additions
        self.disconnect_reason = None  # {"code", "reason"} of the server's last normal close
        self._muted = False
        self._audio_input = self.options.audio_input
        self._audio_output = self.options.audio_output
        self._user_speaking = False
        self._agent_speaking = False
        self._unplayed_turn = None  # audio output off: (turn_id, last delta_id) not yet "played"
        self._ended_turn = None  # the turn of the last response.end
        self._devices = InputDevices(self)
        self._status = DISCONNECTED
        self._socket = None
        self._microphone = None
        self._microphone_rate = None  # the rate _microphone captures at
        # Its chunks are whole `client.audio` messages (ports.Microphone): how to read one.
        self._framed = None
        self._player = None
        self._prepared = PreparedPlayer()  # a player made before connect() (prepare_audio)
        self._connecting = None  # the Work of the connect in progress
        self._connect_asked = None  # the Work connect() last returned (it may not run yet)
        self._tasks = set()  # background work, cancelled on teardown
        self._user_level = 0.0
        self._user_level_age = 0
        self._agent_turn_id = None
        self._dropped_turns = set()
        self._last_delta_id = None
        self._push_to_talk_held = False
        self._preroll = self._new_preroll()
        self._vad = None  # the session's VoiceGate (vad.py) where client-side VAD runs
        self._closing = False
        self._closed_while_connecting = None
        self._socket_generation = 0  # which socket is current: closes of older ones are stale
        self._data_seq = None  # response.data: every seq up to this one was delivered …
        self._data_ahead = set()  # … and these beyond it (a gap another node will fill)
        self._reconnect_attempt = 0  # attempts since the server last spoke
        self._key_retried = False  # a refused key was already authorized again
        self._output_device = None  # the chosen speaker's deviceId; None: the system default
        self._metrics = TurnMetrics(lambda metric: self._call("on_metrics", metric))
        self._recording = None  # the Recording while start_recording() is on

    # -- readable state ------------------------------------------------------------------------

    @property
    def status(self):
        return self._status

    @property
    def user_audio_amplitude(self):
        if self._status != CONNECTED or self._muted or self._microphone is None:
            return 0.0
        return self._user_level

    @property
    def agent_audio_amplitude(self):
        if self._status != CONNECTED or self._player is None or not self._audio_output:
            return 0.0
        return max(0.0, min(1.0, self._player.level))

    @property
    def push_to_talk(self):
        return bool(self.config and self.config.push_to_talk)

    @property
    def conversation_id(self):
        return self.session_id

    @property
    def is_muted(self):
        return self._muted

    @property
    def user_speaking(self):
        return self._user_speaking

    @property
    def agent_speaking(self):
        return self._agent_speaking

    @property
    def enable_vad(self):
        return self.options.enable_vad

    @property
    def audio_input_enabled(self):
        return self._audio_input

    @property
    def audio_output_enabled(self):
        return self._audio_output

    # The SDK's camelCase names (and the seed's `sessionId`).
    sessionId = property(lambda self: self.session_id)
    conversationId = property(lambda self: self.session_id)
    userAudioAmplitude = property(lambda self: self.user_audio_amplitude)
    agentAudioAmplitude = property(lambda self: self.agent_audio_amplitude)
    isMuted = property(lambda self: self._muted)
    userSpeaking = property(lambda self: self._user_speaking)
    agentSpeaking = property(lambda self: self._agent_speaking)
    enableVAD = property(lambda self: self.options.enable_vad)
    audioInputEnabled = property(lambda self: self._audio_input)

    @property
    def output_device(self):
        """The chosen audio output's deviceId; None while the system default plays."""
        return self._output_device

    @property
    def is_recording(self):
        return self._recording is not None

    @property
    def can_choose_output(self):
        """False where the browser lacks `AudioContext.setSinkId` (Firefox, Safari)."""
        return bool(getattr(self._browser_(), "can_choose_output", False))

    outputDevice = property(lambda self: self._output_device)
    isRecording = property(lambda self: self._recording is not None)

    # -- connect ---------------------------------------------------------------------------------

    def connect(self):
        """Start a session. While one is starting or running, this starts no second one.

        Like the seed's promise, the work starts at once: `client.connect()` alone connects, and
        `await client.connect()` also waits, then raises the `LayercodeError` that stopped it
        (also passed to `on_error`). When `disconnect()` interrupts it, it returns quietly.
        """
        if self._status not in (CONNECTED, RECONNECTING):
            self._prepared.resume()  # in the caller's turn: a click's user gesture is current
        self._connect_asked = Work(self._connect_once())
        return self._connect_asked

    def prepare_audio(self):
        """Beyond the SDK: make the player's AudioContext and load its worklet now, so the next
        `connect()` finds them ready and only resumes the context (made before a user gesture,
        it waits suspended; nothing plays or renders until then). Call it when the page is
        ready, before the user clicks; again after a session ended (`disconnect()` and every
        session's end release it, as they release the player). Does nothing while a session
        runs or starts, with audio output off or `defer_audio_init`, outside a secure context
        (`connect()` says why), or when a player is prepared already. A failure is not raised
        here: the next `connect()` fails with it, as opening the player there would have."""
        asked = self._connect_asked is not None and not self._connect_asked.done()
        idle = self._status in (DISCONNECTED, ERROR) and self._player is None and not asked
        if idle and self._audio_output and not self.options.defer_audio_init:
            browser = self._browser_()
            if getattr(browser, "secure_context", True):
                self._prepared.prepare(browser, p.OUTPUT_SAMPLE_RATE)
        return Done()

    async def _connect_once(self):
        if self._status in (CONNECTED, RECONNECTING):  # a reconnect is on its way already
            return
        if self._connecting is None or self._connecting.done():
            self._connecting = Work(self._connect())
        await self._connecting.wait()  # cancelled by disconnect(): returns quietly

    async def _connect(self):
        self._closing = False
        self._closed_while_connecting = None
        self.disconnect_reason = None
        self._reconnect_attempt = 0
        self._key_retried = False
        self._set_status(CONNECTING)
        try:
            # Side by side where nothing depends on the other: the player (its AudioContext and
            # worklet) starts while the backend authorizes; the socket opens while the
            # microphone starts. The player is ready before the socket opens: a pipeline may
            # speak at once.
            browser = self._browser_()
            self._check_secure_context(browser)
            deferred = self.options.defer_audio_init
            steps = [self._authorize()]
            if self._audio_output and not deferred:
                steps.append(self._open_player())
            auth = (await side_by_side(*steps))[0]
            self._adopt(auth)
            self._vad = VoiceGate.for_session(self.options, self.config)
            steps = [self._open_socket(auth)]
            if self._audio_input and not deferred:
                steps.append(self._open_microphone())
            await side_by_side(*steps)
            if self._closed_while_connecting is not None:
                raise self._closed_while_connecting
            self._greet(auth)
            if self.options.enable_amplitude_monitoring:
                self._own(self._report_amplitudes(), "amplitudes")
            self._devices.watch()
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
        config = auth.raw_config if auth.raw_config is not None else auth.config.to_json()
        ids = self.session_id
        info = {"conversation_id": ids, "conversationId": ids, "session_id": ids, "sessionId": ids,
                "config": config}  # fmt: skip
        self._call("on_connect", info)

    def _adopt(self, auth):
        """Take the authorization's conversation, proof and config (an unknown trigger was
        refused while parsing). A new conversation starts its `response.data` count afresh;
        otherwise the count the server reports is where this client starts."""
        if auth.session_id is not None and auth.session_id != self.session_id:
            self._data_seq = None
            self._data_ahead.clear()
        self.session_id = auth.session_id or self.session_id
        self.resume_token = auth.resume_token or self.resume_token
        self.config = auth.config
        self._ours = auth.ours
        if self._data_seq is None:
            self._data_seq = auth.data_seq

    async def _open_socket(self, auth):
        """Open the session's socket; only the newest socket's frames and close are heard."""
        url = self.options.websocket_url or auth.websocket_url or self._cloud_url()
        separator = "&" if "?" in url else "?"
        key = quote(auth.client_session_key)
        self._socket_generation += 1
        generation = self._socket_generation

        def on_frame(frame):
            if generation == self._socket_generation:
                self._on_frame(frame)

        def on_close(code, reason):
            if generation == self._socket_generation:
                self._on_socket_closed(code, reason)

        url = f"{url}{separator}client_session_key={key}"
        await self._keep("_socket", self._browser_().open_socket(url, on_frame, on_close))

    def _greet(self, auth):
        """The socket's first messages: on this project's pipeline, the last `response.data`
        delivered (the server sends the later ones again), then `client.ready`."""
        if auth.ours and self._data_seq is not None:
            self._send(p.ClientResume(last_data_seq=self._data_seq))
        self._send(p.ClientReady())
        self._send_settings(auth)

    def _send_settings(self, auth):
        """`vad_resume_delay` as the pipeline's barge-in window, to this project's pipeline only
        (Layercode's cloud gets nothing beyond the official SDK's messages)."""
        delay = self.options.vad_resume_delay
        if delay is None:
            return
        if auth.ours:
            self._send(p.ClientSettings(false_interruption_ms=int(delay)))
        else:
            log.debug("vad_resume_delay is ignored by Layercode's cloud pipeline")

    def _check_secure_context(self, browser):
        """Microphone and audio worklets exist in secure contexts only: say so before the
        browser fails obscurely (a page on http://192.168.x.y from a phone, say)."""
        if not (self._audio_input or self._audio_output):
            return
        if getattr(browser, "secure_context", True):
            return
        origin = getattr(browser, "origin", "") or "this page"
        raise InsecureContextError(
            f"{origin} is not a secure context, so the browser offers no microphone or audio "
            "here. Open the page over HTTPS (start the server with --ssl-certfile and "
            "--ssl-keyfile, see README), or as http://localhost on the machine that runs it"
        )

    async def _open_player(self):
        """The player prepare_audio() made, started; otherwise one opened now."""
        prepared = self._prepared.take()
        if prepared is not None:
            opening = self._start_player(prepared)
        else:
            opening = self._browser_().open_player(
                p.OUTPUT_SAMPLE_RATE, self._on_playback_drained, self._on_agent_played
            )
        await self._keep("_player", opening)
        if self._output_device is not None:
            try:
                await self._player.set_output_device(self._output_device)
            except LayercodeError as error:  # the default device plays instead
                self._output_device = None
                self._report(error)

    async def _open_microphone(self):
        """Start the microphone on the chosen device (the default unless one was chosen)."""
        rate = self._input_rate()
        opening = self._browser_().open_microphone(
            rate, self.options.chunk_ms, self._on_microphone, self._devices.preferred,
            framing=AUDIO_FRAMING,
        )  # fmt: skip
        await self._keep("_microphone", opening)
        self._microphone_rate = rate
        framed = getattr(self._microphone, "framed", False)
        self._framed = self._microphone.text_of if framed else None
        if self._recording is not None:
            self._recording.microphone_started()
        if self._muted:
            self._microphone.set_muted(True)

    async def _start_player(self, player):
        """Start a prepared player (it closes itself when it cannot start)."""
        await player.start(self._on_playback_drained, self._on_agent_played)
        return player

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
        if self.options.agent_id:
            return p.CLOUD_AGENT_WEBSOCKET_URL
        return p.CLOUD_PIPELINE_WEBSOCKET_URL

    def _authorize_request(self):
        """The SDK 2.x names (`agent_id`, `conversation_id`) for an agent, the seed's for a
        pipeline; the resume token only with the conversation it proves."""
        agent = self.options.agent_id
        return p.AuthorizeRequest(
            pipeline_id=None if agent else self.options.pipeline_id,
            agent_id=agent,
            session_id=None if agent else self.session_id,
            conversation_id=self.session_id if agent else None,
            metadata=self.options.metadata,
            input_sample_rates=list(self.options.input_sample_rates),
            resume_token=self.resume_token if self.session_id else None,
        )

    async def _authorize(self):
        request = self._authorize_request()
        endpoint = self.options.authorize_session_endpoint
        if self.options.authorize_session_request is not None:
            return await self._authorize_by_function(endpoint, request.to_json())
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

    async def _authorize_by_function(self, endpoint, body):
        """The app's own `authorize_session_request(url, body)`, plain or async."""
        try:
            answer = self.options.authorize_session_request(endpoint, body)
            if is_awaitable(answer):
                answer = await answer
        except LayercodeError:
            raise
        except Exception as error:
            raise AuthorizationError(
                f"authorize_session_request failed: {error!r}", reason=str(error)
            ) from error
        if not isinstance(answer, dict):
            raise AuthorizationError(
                "authorize_session_request must return the authorization as a dict (the parsed "
                f"JSON), not {type(answer).__name__}"
            )
        try:
            return p.AuthorizeResponse.from_json(answer)
        except (ProtocolError, TypeError, ValueError, AttributeError) as error:
            raise AuthorizationError(
                f"authorize_session_request returned something unexpected: {error}"
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
        self._prepared.close()  # disconnect() releases a player made for the next connect too
        if self._status == DISCONNECTED and self._socket is None:
            return
        await self._end_session(error=None)

    async def _end_session(self, error):
        was_live = self._status in (CONNECTING, CONNECTED, RECONNECTING)
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
        self._devices.unwatch()
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
        self._prepared.close()
        self._end_vad_speech()  # the pipeline hears the end of speech before the close
        self._vad = None
        if self._socket is not None:
            self._socket.close(p.CloseCode.NORMAL, "client disconnected")
            self._socket = None
        others = [t for t in self._tasks if t is not current]
        await asyncio.gather(*others, return_exceptions=True)
        self._user_level = 0.0
        self._push_to_talk_held = False
        self._preroll = self._new_preroll()
        self._dropped_turns.clear()
        self._metrics.reset()
        self._agent_turn_id = None
        self._unplayed_turn = None
        self._set_user_speaking(False)
        self._set_agent_speaking(False)
        if self.options.enable_amplitude_monitoring:
            self._call("on_user_amplitude_change", 0.0)
            self._call("on_agent_amplitude_change", 0.0)

    async def _fail(self, error):
        await self._teardown()
        self._set_status(ERROR)
        self._call("on_error", error)

    def _on_socket_closed(self, code, reason):
        if self._closing:
            return
        connecting = self._connecting is not None and not self._connecting.done()
        if not connecting and self._reconnects_after(code):
            self._socket = None  # already closed
            self._begin_reconnect(code, reason)
            return
        if code in NORMAL_CLOSES:
            error = None
            self.disconnect_reason = {"code": code, "reason": reason}
            log.info("the server ended the session (code %s): %s", code, reason)
        else:
            detail = f": {reason}" if reason else ""
            error = ConnectionClosed(
                f"the connection closed unexpectedly (code {code}){detail}",
                close_code=code,
                reason=reason,
            )
        self._socket = None  # already closed
        if connecting:
            # connect() is still opening the microphone: it fails with this when done.
            self._closed_while_connecting = error or ConnectionClosed(
                f"the server closed the connection while connecting (code {code})",
                close_code=code,
                reason=reason,
            )
            return
        self._own(self._end_session(error), "server-close")

    # -- reconnect -------------------------------------------------------------------------------

    def _reconnects_after(self, code):
        if not self.options.reconnect or self._status != CONNECTED:
            return False
        if code in p.CloseCode.KEY_REFUSED:
            return not self._key_retried
        return code in p.CloseCode.RECONNECT

    def _begin_reconnect(self, code, reason):
        """The socket dropped: keep the microphone and the player, and come back."""
        log.info("the connection dropped (code %s): reconnecting", code)
        self._push_to_talk_held = False
        self._set_user_speaking(False)
        self._set_status(RECONNECTING)
        self._own(self._reconnect(code, reason), "reconnect")

    def _reconnect_delay(self, attempt):
        """0.25, 0.5, 1, 2, 4, 4 … s with the defaults."""
        first = self.options.reconnect_delay_ms / 1000
        return min(self.options.reconnect_max_delay_ms / 1000, first * 2**attempt)

    async def _reconnect(self, code, reason):
        detail = f": {reason}" if reason else ""
        failure = ConnectionClosed(
            f"the connection closed unexpectedly (code {code}){detail}",
            close_code=code,
            reason=reason,
        )
        key_refused = code in p.CloseCode.KEY_REFUSED
        if key_refused:
            self._key_retried = True
        while True:
            attempt = self._reconnect_attempt
            if attempt >= self.options.reconnect_attempts:
                log.warning("gave up reconnecting after %d attempts", attempt)
                await self._end_session(failure)
                return
            delay = 0.0 if key_refused else self._reconnect_delay(attempt)
            key_refused = False
            self._reconnect_attempt = attempt + 1
            info = {"attempt": attempt + 1, "delay_ms": round(delay * 1000), "code": code,
                    "reason": reason}  # fmt: skip
            self._call("on_reconnecting", info)
            await asyncio.sleep(delay)
            try:
                auth = await self._authorize()
                self._adopt(auth)
                await side_by_side(self._open_socket(auth), self._follow_input_rate())
            except AuthorizationError as error:
                if not (error.retryable or error.status == 429):  # refused: cannot resume
                    await self._end_session(error)
                    return
                failure = error
                continue
            except LayercodeError as error:  # ConnectionFailed: the server is not back yet
                failure = error
                continue
            self._greet(auth)
            self._set_status(CONNECTED)
            ids = self.session_id
            self._call("on_reconnected", {"conversation_id": ids, "conversationId": ids,
                                          "attempts": attempt + 1})  # fmt: skip
            return

    async def _follow_input_rate(self):
        """The server now takes another input rate (a reconnect onto another pipeline): the
        microphone opens again at that rate, then the old one stops. Until then the old one's
        chunks are dropped (`_on_microphone`): audio at the wrong rate is noise to the server."""
        old = self._microphone
        if old is None or self._microphone_rate == self._input_rate():
            return
        try:
            await self._open_microphone()  # replaces _microphone
        except LayercodeError as error:  # the session goes on, without the microphone
            self._report(error)
            self._stop_microphone()
            return
        old.stop()

    # -- push-to-talk --------------------------------------------------------------------------

    def trigger_user_turn_started(self):
        """Push-to-talk pressed: the agent stops, the user's audio (with pre-roll) flows."""
        self._require_push_to_talk()
        if self._push_to_talk_held:
            return Done()
        self._push_to_talk_held = True
        self._interrupt_agent()
        self._send(p.TriggerTurnStart(role="user"))
        while self._preroll:
            self._send_audio(self._preroll.popleft())
        self._set_user_speaking(True)
        return Done()

    def trigger_user_turn_finished(self):
        """Push-to-talk released: the turn is over."""
        self._require_push_to_talk()
        if self._push_to_talk_held:
            self._push_to_talk_held = False
            self._send(p.TriggerTurnEnd(role="user"))
            self._metrics.user_turn_ended(self._now(), "push_to_talk")
            self._set_user_speaking(False)
        return Done()

    def _require_connected(self, what):
        if self._status == RECONNECTING:
            raise InvalidStateError(
                f"the connection dropped and the client is reconnecting: wait for "
                f"on_reconnected, then {what}"
            )
        if self._status != CONNECTED or self._socket is None:
            raise InvalidStateError(f"not connected: call connect() first, then {what}")

    def _require_push_to_talk(self):
        self._require_connected("press and release push-to-talk")
        if not self.push_to_talk:
            raise InvalidStateError("this session's turns are automatic, not push-to-talk")

    # -- typing to the agent ---------------------------------------------------------------------

    def send_client_response_text(self, text):
        """Send typed text as the user's turn (`client.response.text`)."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidArgument("send_client_response_text needs non-empty text (a str)")
        self._require_connected("send text")
        self._send(p.ClientResponseText(content=text))
        self._metrics.text_sent(self._now())
        return Done()

    def send_client_response_data(self, data):
        """Send JSON data to the agent (`client.response.data`)."""
        if not is_json(data):
            raise InvalidArgument(
                "send_client_response_data needs JSON data: dicts with str keys, lists, str, "
                "numbers, booleans and None"
            )
        self._require_connected("send data")
        self._send(p.ClientResponseData(data=data))
        return Done()

    # -- microphone and speaker --------------------------------------------------------------------

    def mute(self):
        """No microphone audio leaves (the track is disabled, nothing is sent); amplitude reads 0.
        Allowed in any state: a client muted before connecting starts muted."""
        if self._muted:
            return
        self._muted = True
        if self._microphone is not None:
            self._microphone.set_muted(True)
        self._end_vad_speech()
        self._user_level = 0.0
        self._call("on_mute_state_change", True)

    def unmute(self):
        """Resume sending the microphone at once."""
        if self._muted:
            self._muted = False
            if self._microphone is not None:
                self._microphone.set_muted(False)
            self._call("on_mute_state_change", False)
        return Done()

    def get_stream(self):
        """The microphone's MediaStream while it runs, else None."""
        return getattr(self._microphone, "stream", None) if self._microphone else None

    def set_audio_input(self, state):
        """Turn the microphone on or off, connected or not (off: a text session)."""
        if not isinstance(state, bool):
            raise InvalidArgument("set_audio_input needs True or False")
        return Work(self._set_audio_input(state))

    async def _set_audio_input(self, state):
        changed = state != self._audio_input
        self._audio_input = state
        if state and self._status == CONNECTED and self._microphone is None:
            try:
                await self._open_microphone()
            except LayercodeError as error:  # the session goes on, by text
                self._audio_input = False
                self._report(error)
                raise
            self._devices.watch()
        elif not state:
            self._stop_microphone()
        if changed:
            self._call("audio_input_changed", state)

    def set_audio_output(self, state):
        """Turn the agent's voice on or off; transcripts and text arrive either way."""
        if not isinstance(state, bool):
            raise InvalidArgument("set_audio_output needs True or False")
        return Work(self._set_audio_output(state))

    async def _set_audio_output(self, state):
        changed = state != self._audio_output
        self._audio_output = state
        if state and self._status == CONNECTED and self._player is None:
            await self._open_player()
        elif not state:
            self._prepared.close()
        if not state and self._player is not None:
            self._player.interrupt()  # what was playing stops now: its turn counts as played
            turn = self._agent_turn_id
            if self._agent_speaking and turn is not None:
                if turn == self._ended_turn:
                    self._send(p.ReplayFinished(last_delta_id_played=self._last_delta_id))
                else:
                    self._unplayed_turn = (turn, self._last_delta_id)
            self._set_agent_speaking(False)
        if changed:
            self._call("audio_output_changed", state)

    def audio_input_connect(self):
        """Start the microphone now (after `defer_audio_init`, or `audio_input_disconnect()`)."""
        self._require_connected("start the microphone")
        return self.set_audio_input(True)

    def audio_input_disconnect(self):
        """Stop the microphone; the session goes on."""
        self._stop_microphone()
        return Done()

    def _stop_microphone(self):
        if self._microphone is not None:
            self._microphone.stop()
            self._microphone = None
        self._end_vad_speech()
        self._user_level = 0.0
        self._devices.unwatch()

    # -- devices ----------------------------------------------------------------------------------

    def list_devices(self, request_permission=False):
        """Awaitable: the audio input devices, each a dict with `deviceId`, `label`, `default`."""
        return Work(self._devices.list(request_permission))

    def set_input_device(self, device_id):
        """Use this microphone (restarting it if it runs); the session goes on."""
        if not isinstance(device_id, str) or not device_id:
            raise InvalidArgument("set_input_device needs a device id (a str from list_devices())")
        return Work(self._devices.choose(device_id))

    def set_preferred_input_device(self, device_id):
        """Like `set_input_device`; None or "default" follows the system's default device."""
        if device_id is not None and (not isinstance(device_id, str) or not device_id):
            raise InvalidArgument("set_preferred_input_device needs a device id, None or 'default'")
        return Work(self._devices.choose(device_id or DEFAULT_DEVICE))

    async def _switch_microphone(self, device_id):
        """Move to `device_id` without touching the session: the new one opens, then the old
        one stops."""
        old = self._microphone
        if old is None or self._status != CONNECTED:
            return
        self._microphone = None
        try:
            await self._open_microphone()
        except LayercodeError as error:
            self._microphone = old
            self._report(error)
            return
        old.stop()
        self._call("on_device_switched", device_id)

    # -- speaker (beyond the SDK) -----------------------------------------------------------------

    def list_output_devices(self, request_permission=False):
        """Awaitable: the audio output devices, dicts like `list_devices()`'s (`kind`
        `audiooutput`). Labels are empty until microphone permission was granted."""
        return Work(self._browser_().list_output_devices(request_permission))

    def set_output_device(self, device_id):
        """Play the agent on this speaker (`AudioContext.setSinkId`), now and in later sessions;
        None or "default" goes back to the system default. Awaitable; raises
        `BrowserUnsupported` at once where the browser cannot choose (Firefox, Safari), and
        `OutputDeviceNotFound` (also to `on_error`) for an unknown device."""
        if device_id is not None and (not isinstance(device_id, str) or not device_id):
            raise InvalidArgument("set_output_device needs a device id (a str), None or 'default'")
        if not self.can_choose_output:
            raise BrowserUnsupported(
                "this browser cannot choose the audio output (it lacks AudioContext.setSinkId; "
                "Chrome and Edge 110+ have it): the system's default device plays"
            )
        return Work(self._set_output_device(None if device_id == DEFAULT_DEVICE else device_id))

    async def _set_output_device(self, device_id):
        if self._player is not None:
            try:
                await self._player.set_output_device(device_id)
            except LayercodeError as error:
                self._report(error)
                raise
        self._output_device = device_id

    # -- recording (beyond the SDK) ---------------------------------------------------------------

    def start_recording(self):
        """Record the conversation from now: the microphone while unmuted, the agent as it
        plays, up to `recording_max_s` (recording.py). `stop_recording()` gives the WAV."""
        self._require_connected("start_recording()")
        if self._recording is None:
            self._recording = Recording(self._now(), self.options.recording_max_s)
        return Done()

    async def stop_recording(self):
        """Stop recording (at once); the WAV file as bytes (stereo: left the microphone, right
        the agent, 16-bit, 16 kHz). Works after the session ended too. Awaited: on MicroPython
        the microphone's audio worklet builds the file when it runs (browser.py); without one
        (the session ended) Python builds it, the browser decoding the chunks."""
        if self._recording is None:
            raise InvalidStateError("not recording: call start_recording() first")
        recording, self._recording = self._recording, None
        build = getattr(self._microphone, "build_wav", None)
        if build is not None:
            wav = await build(*recording.layout())
            if wav is not None:
                return wav
        return recording.wav(getattr(self._browser_(), "decode_base64", None))

    # The SDK's camelCase names (and this client's own additions, in the same spelling).
    listOutputDevices = list_output_devices
    setOutputDevice = set_output_device
    startRecording = start_recording
    stopRecording = stop_recording
    triggerUserTurnStarted = trigger_user_turn_started
    triggerUserTurnFinished = trigger_user_turn_finished
    sendClientResponseText = send_client_response_text
    sendClientResponseData = send_client_response_data
    getStream = get_stream
    prepareAudio = prepare_audio
    setAudioInput = set_audio_input
    setAudioOutput = set_audio_output
    audioInputConnect = audio_input_connect
    audioInputDisconnect = audio_input_disconnect
    listDevices = list_devices
    setInputDevice = set_input_device
    setPreferredInputDevice = set_preferred_input_device

    # -- audio -----------------------------------------------------------------------------------

    def _new_preroll(self):
        """Push-to-talk's pre-roll: the newest chunks only (the oldest fall out)."""
        return collections.deque((), max(1, self.options.preroll_ms // self.options.chunk_ms))

    def _on_microphone(self, audio, level, zero_crossings=None):
        """A chunk from the microphone: base64 PCM16 at the session's rate, or its whole
        `client.audio` message (a framed microphone's, sent as it came), its level, and its
        zero-crossing rate (for the VAD; None where the port does not measure it)."""
        if self._muted:  # the track is disabled too; a chunk already on its way is dropped
            self._user_level = 0.0
            if self._recording is not None:
                rate = self._microphone_rate or self._input_rate()
                self._recording.skip_microphone(self._audio_of(audio), rate, self._now())
            return
        if self._microphone_rate != self._input_rate():  # reopening at the server's new rate
            return
        self._user_level = max(0.0, min(1.0, level))
        self._user_level_age = 0
        self._metrics.heard(level, self._now)  # asks the clock only for a voiced chunk
        if self._recording is not None:
            self._recording.add_microphone(self._audio_of(audio), self._input_rate(), self._now())
        if self._socket is None:
            return
        if self.push_to_talk and not self._push_to_talk_held:
            self._preroll.append(audio)
            return
        if self._vad is None:
            self._send_audio(audio)
            return
        event, chunks = self._vad.push(audio, level, zero_crossings)
        if event is not None:
            self._on_vad_event(event)
        for chunk in chunks:
            self._send_audio(chunk)

    def _on_vad_event(self, event):
        """Client-side VAD (vad.py) heard speech start or end: tell the pipeline, as the
        official SDK does, and the page."""
        self._set_user_speaking(event == VAD_START)
        self._send(p.VadEvent(event=event))
        self._call("on_message", {"type": "vad_events", "event": event,
                                  "userSpeaking": self._user_speaking})  # fmt: skip

    def _end_vad_speech(self):
        if self._vad is not None and self._vad.end() is not None:
            self._on_vad_event(VAD_END)

    def _audio_of(self, chunk):
        """A microphone chunk's base64 audio (a framed one's read back from its message)."""
        if self._framed is None:
            return chunk
        return p.ClientAudio.content_of(self._framed(chunk))

    def _send_audio(self, audio):
        if self._framed is None:
            self._send(p.ClientAudio(content=audio))
        elif self._socket is not None:  # the whole message already (AUDIO_FRAMING)
            self._socket.send(audio)

    def _play(self, message):
        if message.turn_id in self._dropped_turns:
            return
        if not is_base64(message.content):  # checked here; the player worklet decodes it
            self._report(ProtocolError("response.audio is not base64"))
            return
        self._agent_turn_id = message.turn_id
        self._last_delta_id = message.delta_id
        self._metrics.agent_audio(message.turn_id)
        if self._player is None or not self._audio_output:
            # Nothing plays; the turn still has to end for the pipeline (at response.end).
            self._unplayed_turn = (message.turn_id, message.delta_id)
            return
        self._player.play(message.content, message.turn_id, message.delta_id)
        if self._recording is not None:
            self._recording.add_agent(message.content, self._now())
        self._set_agent_speaking(True)

    def _interrupt_agent(self, report=False):
        """Stop the agent's voice now; later audio of the same turn is dropped too.

        With `report` (a barge-in the pipeline announced: it holds the agent's turn), this
        project's pipeline is told where playback stopped (`trigger.response.audio.interrupted`),
        so its history keeps the words the user heard; Layercode's cloud gets only the official
        SDK's messages."""
        if self._agent_turn_id is not None:
            self._dropped_turns.add(self._agent_turn_id)
            self._metrics.agent_interrupted(self._agent_turn_id)
        self._unplayed_turn = None
        if self._player is not None:
            report = report and self._agent_speaking and self._ours
            self._player.interrupt(self._report_interruption if report else None)
            if self._recording is not None:
                self._recording.interrupt_agent(self._now())
        self._set_agent_speaking(False)

    def _report_interruption(self, turn_id, last_delta_id, played_ms):
        if turn_id is not None:
            self._send(p.PlaybackInterrupted(
                turn_id=turn_id, last_delta_id_played=last_delta_id, played_ms=played_ms
            ))  # fmt: skip

    def _on_playback_drained(self, last_delta_id=None):
        """The player ran dry: tell the pipeline which chunk it finished last."""
        played = last_delta_id or self._last_delta_id
        self._send(p.ReplayFinished(reason="completed", last_delta_id_played=played))
        self._set_agent_speaking(False)

    def _on_agent_played(self, turn_id):
        """The player worklet played the first sample of an agent turn."""
        self._metrics.agent_played(turn_id, self._now())

    def _on_response_end(self, message):
        """With nothing playing, the agent's turn was "played" when its last chunk arrived."""
        self._ended_turn = message.turn_id
        playing = (
            self._player is not None
            and self._audio_output
            and message.turn_id == self._agent_turn_id
            and message.turn_id not in self._dropped_turns
        )
        self._metrics.agent_ended(message.turn_id, message.timings, playing)
        unplayed = self._unplayed_turn
        if unplayed is not None and (message.turn_id is None or message.turn_id == unplayed[0]):
            self._unplayed_turn = None
            self._send(p.ReplayFinished(reason="completed", last_delta_id_played=unplayed[1]))
        if self._player is None or not self._audio_output:
            self._set_agent_speaking(False)

    def _set_user_speaking(self, speaking):
        if speaking != self._user_speaking:
            self._user_speaking = speaking
            self._call("on_user_is_speaking_change", speaking)

    def _set_agent_speaking(self, speaking):
        if speaking != self._agent_speaking:
            self._agent_speaking = speaking
            self._call("on_agent_speaking_change", speaking)

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
        if self._reconnect_attempt:  # the server speaks: the connection is back for real
            self._reconnect_attempt = 0
            self._key_retried = False
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
            if message.role == "user":
                if self._may_be_interrupted():
                    self._interrupt_agent(report=True)
                self._set_user_speaking(True)
            elif not self._audio_output or self._player is None:
                self._set_agent_speaking(True)  # nothing plays: the turn is the speaking
            self._call("on_message", message.to_dict())
        elif isinstance(message, p.TurnEnd):
            if message.role == "user":
                self._metrics.user_turn_ended(self._now(), "turn.end")
                self._set_user_speaking(False)
            self._call("on_message", message.to_dict())
        elif isinstance(message, p.ResponseEnd):
            self._on_response_end(message)
            self._call("on_message", message.to_dict())
        elif isinstance(message, p.ResponseData):
            self._deliver_data(message)
        elif isinstance(message, p.ErrorMessage):
            self._report(ServerError(message.code, message.message, message.turn_id))
        else:
            self._call("on_message", message.to_dict())

    def _deliver_data(self, message):
        """Each `seq` once: a message the server sends again after a reconnect is dropped.

        Seqs normally arrive in order; a gap (a message a stale session on another node
        numbered while this client was already back elsewhere) stays open until the next
        resume sends it, so `client.resume` names the last seq before the gap."""
        seq = message.seq
        if seq is not None:
            if self._data_seq is None:
                self._data_seq = seq - 1
            if seq <= self._data_seq or seq in self._data_ahead:
                log.debug("response.data %s was delivered already", seq)
                return
            self._data_ahead.add(seq)
            if len(self._data_ahead) > MAX_DATA_AHEAD:
                self._data_seq = min(self._data_ahead) - 1  # the gap below is given up
            while self._data_seq + 1 in self._data_ahead:
                self._data_seq += 1
                self._data_ahead.discard(self._data_seq)
        self._call("on_data_message", message.to_dict())

    def _may_be_interrupted(self):
        return self.config is None or self.config.can_interrupt or self.push_to_talk

    def _report(self, error):
        log.warning("%s: %s", error.code, error.message)
        self._call("on_error", error)

    # -- plumbing --------------------------------------------------------------------------------

    def _now(self):
        """Milliseconds on the page's clock (`performance.now()`), or a monotonic one."""
        now = getattr(self._browser, "now", None)
        if now is not None:
            return now()
        ticks = getattr(time, "ticks_ms", None)  # MicroPython without a browser
        return ticks() if ticks is not None else time.monotonic() * 1000

    def _input_rate(self):
        return self.config.input_sample_rate if self.config else p.DEFAULT_INPUT_SAMPLE_RATE

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
