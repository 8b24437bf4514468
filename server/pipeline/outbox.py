"""The one writer of a session's WebSocket: frames go out in order, urgent control jumps ahead.

Every stage puts messages here instead of writing to the socket, so frames never interleave and
a slow client never blocks a stage. When the user barges in, `drop_turn` removes everything the
interrupted turn still has queued and remembers its id: a late `response.audio`, `response.text`,
`response.data`, `response.end` or `error` of that turn is refused from then on, whoever
produces it. The `turn.start` that announces the interruption goes out before anything else
(Pipecat's "system frames"). A frame already handed to the socket is the only thing of a
dropped turn that can still reach the client.

The queue is bounded by what feeds it: agent audio is paced to real time (agent_turn.py), the
rest is a few control and text frames per turn.

`response.data` is numbered as it goes out (`number`: the session keeps it in the conversation's
store and sets its `seq`), so a client that reconnects can be sent what it missed. What is
still queued when the outbox closes is kept for it too (`close`, then `keep_unsent`): a data
message the agent produced reaches the client once the client is back, whichever way this
connection ended — except a crash of the node, which loses what was not yet numbered.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable

from layercode_client.protocol import Message, ResponseData

DROPPED_TURNS_KEPT = 64  # dropped ids remembered per session; older turns have long finished


class Outbox:
    def __init__(
        self,
        send_text: Callable[[str], Awaitable[None]],
        number: Callable[[ResponseData], Awaitable[None]] | None = None,
    ):
        self._send_text = send_text
        self._number = number
        self._unsent: list[ResponseData] = []  # data still queued at close, to be kept
        self._queue: collections.deque[Message] = collections.deque()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()  # set while nothing is queued or being written
        self._idle.set()
        self._closed = False
        self._dropped: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.sent = 0
        self.refused = 0  # messages of dropped turns refused after the drop

    def put(self, message: Message) -> bool:
        """Queue `message`; False when it was refused (closed, or of a dropped turn)."""
        if not self._accepts(message):
            return False
        self._queue.append(message)
        self._idle.clear()
        self._ready.set()
        return True

    def put_urgent(self, message: Message) -> bool:
        if not self._accepts(message):
            return False
        self._queue.appendleft(message)
        self._idle.clear()
        self._ready.set()
        return True

    def _accepts(self, message: Message) -> bool:
        if self._closed:
            return False
        if self.is_dropped(message):
            self.refused += 1
            return False
        return True

    def is_dropped(self, message: Message) -> bool:
        """Of a dropped turn: anything that carries its `turn_id`."""
        return getattr(message, "turn_id", None) in self._dropped

    def drop_turn(self, turn_id: str) -> int:
        """Forget everything queued for `turn_id` and refuse its late messages.

        Returns how many queued messages were dropped.
        """
        self._dropped[turn_id] = None
        while len(self._dropped) > DROPPED_TURNS_KEPT:
            self._dropped.popitem(last=False)
        kept = collections.deque(m for m in self._queue if not self.is_dropped(m))
        dropped = len(self._queue) - len(kept)
        self._queue = kept
        return dropped

    def pending(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        self._closed = True
        self._unsent = [m for m in self._queue if self._unnumbered(m)]
        self._queue.clear()
        self._ready.set()
        self._idle.set()

    def _unnumbered(self, message: Message) -> bool:
        return (
            self._number is not None and isinstance(message, ResponseData) and message.seq is None
        )

    async def keep_unsent(self) -> None:
        """Number (keep for a resumed client) the data messages still queued at `close`."""
        unsent, self._unsent = self._unsent, []
        for message in unsent:
            await self._number(message)

    async def drain(self) -> None:
        """Wait until everything queued so far has been written (or the outbox closed)."""
        await self._idle.wait()

    async def run(self) -> None:
        """Write frames until closed. A send failure (client gone) ends the loop quietly."""
        while not self._closed:
            await self._ready.wait()
            while self._queue and not self._closed:
                message = self._queue.popleft()
                if self._unnumbered(message):
                    await self._number(message)
                await self._send_text(message.encode())
                self.sent += 1
            self._ready.clear()
            self._idle.set()
