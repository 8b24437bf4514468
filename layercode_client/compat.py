"""The few places where CPython (and Pyodide) and MicroPython differ, hidden once.

The package is written in the subset all three run: no dataclasses, enum or typing, no
`from __future__`, no `asyncio.Queue`, `shield`, `ensure_future`, futures or done-callbacks, no
`contextlib`, no `urllib`, no `{**a}` displays, `(*a, b)` displays or positional-only
parameters, no annotation CPython could not evaluate. tests/micropython/ runs the client's
checks on MicroPython itself to keep it so. What remains to hide is here:

- MicroPython's coroutines are generators: they have no `__await__`;
- its `binascii` is pure Python in PyScript's build (1.2 s to encode 6 KB): audio stays base64
  text in Python, and the worklets encode and decode it;
- it has no `urllib.parse.quote`;
- a task nobody references may be collected by CPython: `call_soon` keeps its own.

A pitfall no helper can hide: on MicroPython a JavaScript exception thrown by a *synchronous*
call (a constructor, `JSON.parse`) cannot be caught in Python; it aborts the whole run. Only
rejected promises arrive as catchable exceptions. Check arguments in Python before such calls.
"""

import asyncio
import re
import sys

MICROPYTHON = sys.implementation.name == "micropython"

URL_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"
BASE64_RUN = re.compile("^[A-Za-z0-9+/]*$")
BASE64_RUN_LENGTH = 1024


def is_awaitable(value):
    """True for what a callback may return to be awaited: a coroutine or another awaitable."""
    if hasattr(value, "__await__"):
        return True
    return MICROPYTHON and type(value).__name__ == "generator"


def awaitable_of(coroutine):
    """What an `__await__` method returns to await `coroutine`."""
    return coroutine if MICROPYTHON else coroutine.__await__()


def is_base64(text):
    """True for base64 text, checked without decoding it (MicroPython's `binascii` is pure
    Python in PyScript's build: 50 ms for 6 KB). A regular expression, in short runs: MicroPython's
    `re` recurses once per character and overflows the JS stack, uncatchably, past about 10 000;
    a run of 1024 takes ~30 µs there."""
    body = text.rstrip("=")
    if len(text) % 4 or len(text) - len(body) > 2:
        return False
    for start in range(0, len(body), BASE64_RUN_LENGTH):
        if BASE64_RUN.match(body[start : start + BASE64_RUN_LENGTH]) is None:
            return False
    return True


def quote(text):
    """Percent-encode everything but unreserved characters (`urllib.parse.quote(safe="")`)."""
    return "".join(
        char if char in URL_SAFE else "".join(f"%{b:02X}" for b in char.encode()) for char in text
    )


_soon = set()  # tasks of call_soon still to run: referenced until they have


def call_soon(function, *args):
    """Run `function(*args)` on the next turn of the loop (MicroPython's loop has no call_soon)."""

    async def call():
        try:
            function(*args)
        finally:
            _soon.discard(task)

    task = asyncio.create_task(call())
    _soon.add(task)
    return task
