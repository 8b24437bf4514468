"""Live sessions across nodes (`REDIS_URL`): one socket per session on the whole cluster, and
a deletion that reaches the socket wherever it lives.

On one node, `Connections` keeps a session to one live socket (a newer connection replaces
the older, 4011) and a deletion closes the live socket (4004). With several nodes the older
socket may live on another node; this bus carries the same two requests there:

- Redis holds, for each live session, the id of the node serving it (`lc:live:<session>`,
  set when a connection opens, removed when it ends if still this node's; a TTL of a day
  bounds what a crashed node leaves behind).
- Each node subscribes to its own channel (`lc:node:<node id>`). To stop a session served
  elsewhere, a node publishes `{"op": "stop", ...}` on the owner's channel; the owner stops
  the connection with the code given, waits for it to finish (its last turn recorded), and
  answers `{"op": "stopped", ...}` on the asker's channel. The asker awaits that answer,
  bounded by `REPLACE_WAIT_S`, as it awaits a local replacement.
- A node killed by a crash has no subscription left: Redis reports that the stop request
  reached nobody (PUBLISH answers 0), and the asker goes on at once — the dead node's socket
  is gone anyway.

The bus is best effort by design: if Redis cannot be reached when a connection opens, the
connection is served anyway (its key was redeemed, so Redis answered a moment ago) and the
failure is logged — refusing a caller because a duplicate *might* exist elsewhere would turn a
Redis blip into an outage. The subscription reconnects by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from typing import TYPE_CHECKING

import redis.asyncio as redis
from redis.exceptions import RedisError

from .stores import StoreUnavailable

if TYPE_CHECKING:
    from .connections import Connections

log = logging.getLogger("server.pipeline.bus")

LIVE = "lc:live:"
CHANNEL = "lc:node:"
LIVE_TTL_S = 86400  # what a crashed node leaves behind lives at most this long
SOCKET_TIMEOUT_S = 1.0
RESUBSCRIBE_BACKOFF_S = 0.5  # after Redis went away, before subscribing again
SUBSCRIBE_TIMEOUT_S = 5.0
CLOSE_TIMEOUT_S = 5.0  # closing waits this long for the listener and the stop requests

# KEYS[1]: the session's owner entry. ARGV[1]: this node. Deletes it only if it is ours.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class SessionBus:
    """This node's end of the bus: claims and releases sessions, and serves stop requests."""

    def __init__(self, commands: redis.Redis, listener: redis.Redis, connections: Connections):
        self.node_id = "node_" + secrets.token_hex(8)
        self.commands = commands
        self.listener = listener  # its own connection: a subscription blocks it
        self.connections = connections
        self._release = commands.register_script(RELEASE)
        self._answers: dict[str, asyncio.Future] = {}  # request id → the owner's answer
        self._served: set[asyncio.Task] = set()  # stop requests being carried out here
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False

    @classmethod
    async def open(cls, url: str, connections: Connections) -> SessionBus:
        """Connect, subscribe to this node's channel, and start serving it."""
        timeouts = {"socket_connect_timeout": SOCKET_TIMEOUT_S, "decode_responses": True}
        commands = redis.Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT_S, **timeouts)
        listener = redis.Redis.from_url(url, **timeouts)
        bus = cls(commands, listener, connections)
        bus._task = asyncio.create_task(bus._listen(), name="session-bus")
        try:
            await asyncio.wait_for(bus._subscribed.wait(), SUBSCRIBE_TIMEOUT_S)
        except TimeoutError:
            await bus.close()
            raise StoreUnavailable("session bus", "Redis did not accept a subscription") from None
        return bus

    @property
    def channel(self) -> str:
        return CHANNEL + self.node_id

    # -- asking other nodes ---------------------------------------------------------------------

    async def claim(self, session_id: str, code: int, reason: str) -> None:
        """This node now serves `session_id`; the node that served it before (if another, and
        alive) stops its connection with `code`, and this returns once it has."""
        try:
            previous = await self.commands.set(
                LIVE + session_id, self.node_id, ex=LIVE_TTL_S, get=True
            )
            if previous and previous != self.node_id:
                await self._stop_on(previous, session_id, code, reason)
        except RedisError as error:
            log.warning("could not claim session %s across nodes: %s", session_id[-6:], error)

    async def release(self, session_id: str) -> None:
        """The session's connection here ended: forget it, unless another node took it."""
        try:
            await self._release(keys=[LIVE + session_id], args=[self.node_id])
        except RedisError as error:  # the TTL forgets it instead
            log.warning("could not release session %s: %s", session_id[-6:], error)

    async def end(self, session_id: str, code: int, reason: str) -> None:
        """Stop the session's connection on whichever other node serves it (a deletion)."""
        try:
            owner = await self.commands.get(LIVE + session_id)
            if owner and owner != self.node_id:
                await self._stop_on(owner, session_id, code, reason)
        except RedisError as error:
            log.warning("could not reach session %s's node: %s", session_id[-6:], error)

    async def _stop_on(self, node_id: str, session_id: str, code: int, reason: str) -> None:
        from .connections import REPLACE_WAIT_S

        request_id = secrets.token_hex(8)
        answer = asyncio.get_running_loop().create_future()
        self._answers[request_id] = answer
        try:
            request = {"op": "stop", "id": request_id, "session": session_id, "code": code,
                       "reason": reason, "reply_to": self.channel}  # fmt: skip
            if not await self.commands.publish(CHANNEL + node_id, json.dumps(request)):
                return  # nobody listens there: that node is gone, and its sockets with it
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(answer, REPLACE_WAIT_S)
        finally:
            del self._answers[request_id]

    # -- answering them -------------------------------------------------------------------------

    async def _listen(self) -> None:
        while not self._closing:
            try:
                async with self.listener.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    self._subscribed.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._received(message["data"])
            except (RedisError, OSError) as error:
                if self._closing:  # a cancellation the client turned into an error
                    return
                log.warning("session bus lost Redis (%s); subscribing again", error)
                await asyncio.sleep(RESUBSCRIBE_BACKOFF_S)

    def _received(self, data: str) -> None:
        try:
            message = json.loads(data)
            op = message["op"]
        except (ValueError, KeyError, TypeError):
            log.warning("session bus: ignored a malformed message")
            return
        if op == "stopped":
            answer = self._answers.get(message.get("id"))
            if answer is not None and not answer.done():
                answer.set_result(None)
        elif op == "stop":
            task = asyncio.create_task(self._serve_stop(message), name="session-bus-stop")
            self._served.add(task)
            task.add_done_callback(self._served.discard)

    async def _serve_stop(self, message: dict) -> None:
        try:
            await self.connections.end_here(
                str(message["session"]), int(message["code"]), str(message["reason"])[:120]
            )
            reply = {"op": "stopped", "id": message["id"]}
            await self.commands.publish(str(message["reply_to"]), json.dumps(reply))
        except (KeyError, TypeError, ValueError):
            log.warning("session bus: ignored a malformed stop request")
        except RedisError as error:  # the asker stops waiting after REPLACE_WAIT_S
            log.warning("session bus: could not answer a stop request: %s", error)

    async def close(self) -> None:
        """Stop listening and serving, within `CLOSE_TIMEOUT_S` whatever Redis does: a client
        library that turns a cancellation into a connection error (redis-py has) would
        otherwise send the listener back to subscribing, and the node's shutdown would wait
        for it for ever."""
        self._closing = True
        tasks = [t for t in (self._task, *self._served) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
            if stuck:
                log.warning("session bus: %d task(s) did not stop; left behind", len(stuck))
        clients = asyncio.gather(self.commands.aclose(), self.listener.aclose(),
                                 return_exceptions=True)  # fmt: skip
        try:
            await asyncio.wait_for(clients, CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.warning("session bus: Redis connections did not close within %g s",
                        CLOSE_TIMEOUT_S)  # fmt: skip
