"""The embedded pipeline's WebSocket endpoint, at Layercode's paths.

Checks, before anything else, the Host and Origin (hosts.py: the same allowlist as CORS; a
connection without Origin is not a browser page and is allowed), that the server is not
draining, the `client_session_key` (a key store that cannot be reached: 1013, try again
later), that the address that asked for the key is not barred for flooding audio
(`FLOOD_PENALTY_SECONDS`, 4009), and that the node has room (`MAX_SESSIONS`, 1013 too). A
refusal is made after accepting, as a close code with a reason (a refusal during the handshake
would reach the browser as a bare failure, without the reason). Then the session runs until
either side closes, the session is replaced by a newer connection, the client stays silent for
`IDLE_TIMEOUT` (4008), or the server drains (1012). Close codes: `protocol.CloseCode` and
docs/protocol.md §4.

Frames reach the session through `_text_frames`, which owns the receive side: binary frames,
over-long `client.response.text`/`data` (`message_too_long`), frames nested deeper than 64
levels, holding a lone surrogate or NaN/Infinity (`protocol_error`) get an `error` and are
dropped there, and the session goes on: it only ever sees frames it can parse, store and echo.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator

from starlette.websockets import WebSocket, WebSocketDisconnect

from layercode_client.protocol import CloseCode, ErrorMessage

from ..config import Settings
from ..hosts import host_allowed, origin_allowed
from ..limits import client_address
from ..logs import session_tag
from .connections import Connection
from .keys import KeyRefused
from .session import PipelineSession
from .stores import StoreUnavailable

log = logging.getLogger("server.pipeline")

# Only frames that may carry a long text are parsed here (audio frames never match: base64 has
# no quotes), and only when the whole frame is longer than the limit.
TEXT_MESSAGE = re.compile(r'"type"\s*:\s*"client\.response\.(?:text|data)"')
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_FRAME_DEPTH = 64  # JSON nesting a frame may have; deeper is refused before it is parsed


class _Constant(ValueError):
    pass


def _no_constant(name: str):
    raise _Constant(name)


def _depth(frame: str) -> int:
    """How deeply the frame's JSON nests (brackets inside strings counted too: an upper bound)."""
    depth = deepest = 0
    for char in frame:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _has_lone_surrogate(value) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if LONE_SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def refusal(frame: str, max_chars: int) -> ErrorMessage | None:
    """Why `frame` must not reach the session, as the error to answer; None if it may.

    Each check is a C-speed scan first (a count, a regex, `in`), and a parse only for the rare
    frame that trips it, so an audio frame costs microseconds here.
    """
    if frame.count("[") + frame.count("{") > MAX_FRAME_DEPTH and _depth(frame) > MAX_FRAME_DEPTH:
        return ErrorMessage(
            code="protocol_error", message=f"the frame nests deeper than {MAX_FRAME_DEPTH} levels"
        )
    suspicious = SURROGATE_ESCAPE.search(frame) or "NaN" in frame or "Infinity" in frame
    long_text = len(frame) > max_chars and TEXT_MESSAGE.search(frame)
    if not (suspicious or long_text):
        return None
    try:
        message = json.loads(frame, parse_constant=_no_constant)
    except _Constant:
        return ErrorMessage(code="protocol_error", message="NaN and Infinity are not JSON")
    except (ValueError, RecursionError):
        return None  # malformed: the session answers it with its own protocol_error
    if suspicious and _has_lone_surrogate(message):
        return ErrorMessage(
            code="protocol_error", message="the frame holds a lone UTF-16 surrogate (\\ud800)"
        )
    if long_text and isinstance(message, dict) and _content_length(message) > max_chars:
        return ErrorMessage(
            code="message_too_long",
            message=f"the message content is longer than {max_chars} characters "
            "(MAX_MESSAGE_CHARS); dropped",
        )
    return None


def _content_length(message: dict) -> int:
    content = message.get("content")
    if isinstance(content, str):
        return len(content)
    try:
        return len(json.dumps(content))
    except (ValueError, TypeError, RecursionError):
        return 0


# What the session's reader takes from the socket ahead of the session, at most (besides one
# message of any size): about 6 s of 16 kHz audio in 100 ms frames; the rest waits in the socket.
READ_AHEAD_CHARS = 256 * 1024


class _Reader:
    """Reads the socket's messages ahead of the session, up to `READ_AHEAD_CHARS` of them.

    Why a reader of its own: a frame the session waited for through a task of its own, raced
    with the stop (a `receive` task, `asyncio.wait`), cost the session three turns of the event
    loop, even when the frame had long arrived. On a loop kept busy by many sessions (every
    turn over 33 ms, none late enough to count as a hold-up in `LoopLag`) a session read less
    than real time, and its audio built a backlog that came at once when the loop was quiet
    again: clients streaming at real time were refused with `audio_too_fast` (bench/soak.py, 50
    sessions, load 4: 38 of them within a second, the loop's lag at 0.00 s; on a loop busy 100
    ms a turn, a session read 3 s of audio in 10). The session takes every frame this reader
    holds without a turn of the loop (`pop`), so its audio waits a turn or so, never a backlog
    that grows.
    """

    def __init__(self, websocket: WebSocket):
        self.websocket = websocket
        self.messages: collections.deque[dict] = collections.deque()
        self._chars = 0  # held in `messages`
        self.arrived = asyncio.Event()  # a message (or the reader's end) is there to take
        self._room = asyncio.Event()
        self.failed: BaseException | None = None  # what ended the reading, raised in `pop`
        self.task = asyncio.create_task(self._read(), name="websocket-reader")

    async def _read(self) -> None:
        try:
            while True:
                # No await suspends while the socket's library has messages queued: a backlog
                # is taken in one go, up to the limit.
                message = await self.websocket.receive()
                self.messages.append(message)
                self._chars += _size(message)
                self.arrived.set()
                if message["type"] == "websocket.disconnect":
                    return
                while self._chars >= READ_AHEAD_CHARS:  # bounded: the rest waits in the socket
                    self._room.clear()
                    await self._room.wait()
        except Exception as error:  # the session gets it as it would from `receive`
            self.failed = error
            self.arrived.set()

    def pop(self) -> dict | None:
        """The next message read, if there is one (None: wait on `arrived`)."""
        if self.messages:
            message = self.messages.popleft()
            self._chars -= _size(message)
            self._room.set()
            return message
        if self.failed is not None:
            raise self.failed
        self.arrived.clear()
        return None

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


def _size(message: dict) -> int:
    return len(message.get("text") or message.get("bytes") or "")


async def _text_frames(
    websocket: WebSocket, connection: Connection, settings: Settings, idle_s: float
) -> AsyncIterator[str]:
    """Text frames until the client leaves, is idle for `idle_s`, or the connection is stopped."""
    reader = _Reader(websocket)
    stopped = asyncio.create_task(connection.stopped.wait(), name="connection-stopped")
    try:
        # A stop wins over a frame that is ready too: a flooding client always has one, so
        # checking only for frames kept reading (and logging) after the session closed it.
        while not connection.stopped.is_set():
            message = reader.pop()
            if message is None:  # nothing has arrived: wait for a frame, the stop or the idle
                arrived = asyncio.create_task(reader.arrived.wait(), name="websocket-arrived")
                done, _ = await asyncio.wait(
                    {arrived, stopped}, timeout=idle_s, return_when=asyncio.FIRST_COMPLETED
                )
                arrived.cancel()
                if not done:
                    connection.stop(
                        CloseCode.IDLE_TIMEOUT, f"idle timeout: nothing received for {idle_s:g} s"
                    )
                continue
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                text = message["text"]
                refused = refusal(text, settings.max_message_chars)
                if refused is not None:
                    await websocket.send_text(refused.encode())
                    continue
                yield text
            elif message.get("bytes") is not None:
                error = ErrorMessage(
                    code="protocol_error", message="binary frames are not supported"
                )
                await websocket.send_text(error.encode())
    finally:
        stopped.cancel()
        await reader.close()


async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    log.info("websocket refused: %s", reason)
    with contextlib.suppress(RuntimeError):
        await websocket.close(code, reason)


async def pipeline_socket(websocket: WebSocket) -> None:
    pipeline = websocket.app.state.pipeline
    settings: Settings = websocket.app.state.settings
    key = websocket.query_params.get("client_session_key")
    await websocket.accept()
    if not host_allowed(websocket, settings) or not origin_allowed(websocket, settings):
        await _refuse(
            websocket,
            CloseCode.ORIGIN_REFUSED,
            "this page's origin may not connect; add it to CORS_ALLOW_ORIGINS on the server",
        )
        return
    if websocket.app.state.draining:
        await _refuse(websocket, CloseCode.SERVICE_RESTART, "the server is restarting: reconnect")
        return
    try:
        grant = await pipeline.stores.keys.redeem(key)
    except KeyRefused as refused:
        await _refuse(websocket, refused.close_code, refused.reason)
        return
    except StoreUnavailable as error:
        log.warning("websocket refused: %s", error, exc_info=error.__cause__)
        await _refuse(websocket, CloseCode.TRY_AGAIN_LATER, f"{error.message}; try again")
        return
    address = grant.client_address or client_address(websocket, settings.trusted_proxies)
    penalty = websocket.app.state.flood_penalty
    barred = penalty.remaining(address)
    if barred is not None:
        await _refuse(
            websocket,
            CloseCode.AUDIO_FLOOD,
            f"a session from this address was closed for flooding audio; retry in {barred:g} s",
        )
        return
    if len(pipeline.connections) >= settings.max_sessions and not pipeline.connections.get(
        grant.session_id
    ):
        await _refuse(
            websocket,
            CloseCode.TRY_AGAIN_LATER,
            f"this server is full ({settings.max_sessions} sessions); try again shortly",
        )
        return
    connection = await pipeline.connections.open(grant.session_id)
    tag = session_tag(grant.session_id)
    bursts = pipeline.address_bursts

    async def close(code: int, reason: str) -> None:
        """The session ends its connection (a hang-up, a flood): the receive side stops, the
        session cleans up, and the socket closes with `code` below (the first code wins). A
        flood bars the address that asked for the key for a while (limits.FloodPenalty)."""
        if code == CloseCode.AUDIO_FLOOD:
            penalty.penalise(address)
        connection.stop(code, reason)

    session = None
    try:
        services = pipeline.services_for(websocket.scope)
        session = PipelineSession(grant, services, websocket.send_text, close)
        session.pacer.share(bursts.open(address))  # one burst per address (pacing.SharedBurst)
        connection.session = session
        # A push-to-talk client sends nothing between presses: it gets a longer timeout.
        idle_s = (
            settings.push_to_talk_idle_timeout
            if grant.config.push_to_talk
            else settings.idle_timeout
        )
        await session.run(_text_frames(websocket, connection, settings, idle_s))
    except WebSocketDisconnect:
        pass
    except Exception:
        log.exception("session %s failed", tag)
        connection.stop(CloseCode.INTERNAL_ERROR, "the pipeline failed; see server log")
    finally:
        if session is not None and session.pacer.shared is not None:
            bursts.release(address)
        await pipeline.connections.release(connection)
    if connection.stop_code is not None:
        log.info("session %s closed: %s", tag, connection.stop_reason)
        with contextlib.suppress(Exception):  # the client may be gone already
            await websocket.close(connection.stop_code, connection.stop_reason)
