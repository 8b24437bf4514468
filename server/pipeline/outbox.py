"""The one writer of a session's WebSocket: frames go out in order, urgent control jumps ahead.

Every stage puts messages here instead of writing to the socket, so frames never interleave and
a slow client never blocks a stage. When the user barges in, `drop_turn_audio` removes the
interrupted turn's queued audio and the `turn.start` that announces the interruption goes out
before anything else (Pipecat's "system frames").
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable

from layercode_client.protocol import Message, ResponseAudio


class Outbox:
    def __init__(self, send_text: Callable[[str], Awaitable[None]]):
        self._send_text = send_text
        self._queue: collections.deque[Message] = collections.deque()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()  # set while nothing is queued or being written
        self._idle.set()
        self._closed = False
        self.sent = 0

    def put(self, message: Message) -> None:
        if not self._closed:
            self._queue.append(message)
            self._idle.clear()
            self._ready.set()

    def put_urgent(self, message: Message) -> None:
        if not self._closed:
            self._queue.appendleft(message)
            self._idle.clear()
            self._ready.set()

    def drop_turn_audio(self, turn_id: str) -> int:
        """Forget the queued audio of `turn_id`; returns how many chunks were dropped."""
        kept = collections.deque(
            m for m in self._queue if not (isinstance(m, ResponseAudio) and m.turn_id == turn_id)
        )
        dropped = len(self._queue) - len(kept)
        self._queue = kept
        return dropped

    def pending(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        self._closed = True
        self._queue.clear()
        self._ready.set()
        self._idle.set()

    async def drain(self) -> None:
        """Wait until everything queued so far has been written (or the outbox closed)."""
        await self._idle.wait()

    async def run(self) -> None:
        """Write frames until closed. A send failure (client gone) ends the loop quietly."""
        while not self._closed:
            await self._ready.wait()
            while self._queue and not self._closed:
                message = self._queue.popleft()
                await self._send_text(message.encode())
                self.sent += 1
            self._ready.clear()
            self._idle.set()
