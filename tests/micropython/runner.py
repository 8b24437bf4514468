"""A tiny test runner that works on CPython and on MicroPython.

Runs every `test_*` function (plain or async) of the check modules below, each with a time
limit, and prints one line per test and a summary. `run.mjs` runs it on the npm MicroPython
build the page uses, under Node; `python -m tests.micropython.runner` runs it on CPython.
`test_micropython.py` does both from pytest. The checks use plain `assert` and the helpers here,
in the subset of Python the client library is written in.
"""

import asyncio
import sys

MODULES = (
    "tests.micropython.check_protocol",
    "tests.micropython.check_options",
    "tests.micropython.check_client",
    "tests.micropython.check_sdk",
    "tests.micropython.check_reconnect",
    "tests.micropython.check_vad",
    "tests.micropython.check_extras",
    "tests.micropython.check_prepared",
)
TIME_LIMIT_S = 10  # a hang fails its test instead of the run


def raises(kind, call, words=""):
    """Call `call()`; assert it raises `kind` whose message contains `words`; return the error."""
    try:
        call()
    except kind as error:
        assert words in str(error), f"{words!r} not in {str(error)!r}"
        return error
    raise AssertionError(f"{call} did not raise {kind.__name__}")


async def raises_async(kind, awaitable, words=""):
    """`raises` for an awaitable."""
    try:
        await awaitable
    except kind as error:
        assert words in str(error), f"{words!r} not in {str(error)!r}"
        return error
    raise AssertionError(f"it did not raise {kind.__name__}")


def print_failure(error):
    if hasattr(sys, "print_exception"):  # MicroPython
        sys.print_exception(error)
    else:
        import traceback

        traceback.print_exception(type(error), error, error.__traceback__)


def load(name):
    module = __import__(name)
    for part in name.split(".")[1:]:
        module = getattr(module, part)
    return module


async def run_one(function):
    result = function()
    if result is not None:  # a coroutine
        await asyncio.wait_for(result, TIME_LIMIT_S)


async def main():
    """Run everything; return the number of failures."""
    passed = failed = 0
    for name in MODULES:
        module = load(name)
        for test in sorted(n for n in dir(module) if n.startswith("test_")):
            try:
                await run_one(getattr(module, test))
            except Exception as error:
                failed += 1
                print(f"FAIL {name}.{test}")
                print_failure(error)
            else:
                passed += 1
                print(f"ok   {name}.{test}")
    implementation = sys.implementation.name
    print(f"{implementation}: {passed} passed, {failed} failed")
    return failed


if __name__ == "__main__":
    sys.exit(1 if asyncio.run(main()) else 0)
