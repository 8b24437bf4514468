"""A synchronous producer in a worker thread, consumed as an async iterator on the event loop.

espeak-ng synthesises in a blocking C call; `stream_from_thread` runs it in a thread and hands
each chunk to the loop through a bounded hand-off (`AHEAD_CHUNKS` credits), so the worker never
runs more than a few seconds of audio ahead of its consumer, and stops at its next chunk once
the consumer has gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable

AHEAD_CHUNKS = 16  # how far (4 s of audio) the worker may run ahead of its consumer


class _Stop(Exception):
    """The consumer went away: stop synthesising."""


async def stream_from_thread(
    produce: Callable[[Callable[[bytes], None]], None], ahead: int = AHEAD_CHUNKS
) -> AsyncIterator[bytes]:
    """Run `produce(emit)` in a thread; yield what it emits, in order, as it comes.

    `emit` blocks while `ahead` chunks wait for the consumer, and raises `_Stop` once the
    consumer has gone, which ends `produce` at its next chunk.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
    room = threading.Semaphore(ahead)  # credits: taken by the worker, returned by the consumer
    stopped = threading.Event()

    def emit(pcm: bytes) -> None:
        while not room.acquire(timeout=0.1):
            if stopped.is_set():
                raise _Stop
        if stopped.is_set():
            raise _Stop
        loop.call_soon_threadsafe(queue.put_nowait, pcm)

    def work() -> None:
        try:
            produce(emit)
        except _Stop:
            return
        except BaseException as error:  # handed to the consumer, which re-raises it
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(queue.put_nowait, error)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, None)

    worker = loop.run_in_executor(None, work)
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            room.release()
            yield item
    finally:
        stopped.set()
        room.release()  # a worker waiting for room wakes now, not at its next poll
        if not worker.done():
            worker.add_done_callback(lambda f: f.exception())  # never an unretrieved error
