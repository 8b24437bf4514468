"""Run a coroutine from a plain (sync) test, whatever loop the thread already has."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor


def run(coro, timeout: float = 120.0):
    """`asyncio.run` in a thread of its own: Playwright's sync API owns the main thread's loop
    once a browser test has run, and asyncio.run refuses to start inside a running loop."""

    async def bounded():
        return await asyncio.wait_for(coro, timeout)

    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, bounded()).result()
