"""The node's live WebSocket connections: one per session, counted, stoppable, drained together.

A session has at most one live socket — on the whole cluster when nodes share Redis: the bus
(session_bus.py) carries the replacement and a deletion to the node that serves the session.
A second connection to the same session (a reconnect whose old socket the server has not yet
seen die, or the same tab twice) replaces the first: the old one is stopped (closed with 4011)
and finished before the new session starts, so two sessions never write one conversation's
history at once. Replacing rather than refusing means a
client that lost its network can come straight back; only the holder of a new session key —
the owner, who had to prove it with the resume token — can do it.

Stopping is cooperative: `stop()` records the close code and wakes the connection's frame
iterator (websocket.py), which ends; the session then finishes its own clean-up as when the
client leaves, and the endpoint closes the socket with the recorded code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from layercode_client.protocol import CloseCode

if TYPE_CHECKING:
    from .session_bus import SessionBus

log = logging.getLogger("server.pipeline")

REPLACE_WAIT_S = 5.0  # how long a new connection waits for the one it replaces to finish
REPLACED = "a newer connection took over this session"


class Connection:
    def __init__(self, session_id: str):
        self.session_id = session_id
        self.session: Any = None  # the PipelineSession, once it exists (for `drain`)
        self.stop_code: int | None = None
        self.stop_reason = ""
        self.stopped = asyncio.Event()
        self.finished = asyncio.Event()

    def stop(self, code: int, reason: str) -> None:
        """Ask the connection to end and close with `code` (the first request wins)."""
        if self.stop_code is None:
            self.stop_code, self.stop_reason = code, reason
        self.stopped.set()


class Connections:
    def __init__(self) -> None:
        self._live: dict[str, Connection] = {}
        # With Redis (several nodes), the same rules across nodes: session_bus.py.
        self.bus: SessionBus | None = None

    def __len__(self) -> int:
        return len(self._live)

    def get(self, session_id: str) -> Connection | None:
        return self._live.get(session_id)

    async def open(self, session_id: str) -> Connection:
        """Register the session's new connection, replacing (and awaiting) an older one — on
        this node, or on another one through the bus."""
        older = self._live.get(session_id)
        if older is not None:
            older.stop(CloseCode.SESSION_REPLACED, REPLACED)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(older.finished.wait(), REPLACE_WAIT_S)
        if self.bus is not None:
            await self.bus.claim(session_id, CloseCode.SESSION_REPLACED, REPLACED)
        connection = Connection(session_id)
        self._live[session_id] = connection
        return connection

    async def release(self, connection: Connection) -> None:
        if self._live.get(connection.session_id) is connection:
            del self._live[connection.session_id]
            if self.bus is not None:  # before `finished`: a replacement here claims after it
                await self.bus.release(connection.session_id)
        connection.finished.set()

    async def end(self, session_id: str, code: int, reason: str) -> None:
        """Stop the session's connection, here or on another node, and wait for it to end."""
        await self.end_here(session_id, code, reason)
        if self.bus is not None:
            await self.bus.end(session_id, code, reason)

    async def end_here(self, session_id: str, code: int, reason: str) -> None:
        """Stop the session's connection on this node, if any, and wait for it to finish."""
        connection = self._live.get(session_id)
        if connection is not None:
            connection.stop(code, reason)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(connection.finished.wait(), REPLACE_WAIT_S)

    async def drain(self, deadline: float) -> None:
        """Let each session finish what it is saying, then close every socket with 1012.

        `deadline` is a `loop.time()`. A session with a `drain(deadline)` hook says when it is
        done (its answer played to the end); one without is given until the deadline, or until
        its client leaves, since the answer it may be speaking cannot be seen from here.
        """
        loop = asyncio.get_running_loop()
        connections = list(self._live.values())
        waits = [_drained(c, deadline) for c in connections]
        if waits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*waits, return_exceptions=True),
                    max(0.0, deadline - loop.time()),
                )
        for connection in connections:
            connection.stop(
                CloseCode.SERVICE_RESTART, "the server is restarting: reconnect to resume"
            )
        finishing = [c.finished.wait() for c in connections]
        if finishing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*finishing), REPLACE_WAIT_S)


async def _drained(connection: Connection, deadline: float) -> None:
    hook = getattr(connection.session, "drain", None)
    if hook is not None:
        await hook(deadline)
    else:
        await connection.finished.wait()
