"""The client beyond the JS SDK under pytest (output device, metrics, recording, secure
context): every check of tests/micropython/check_extras.py, one pytest test each (the
MicroPython runner runs the same checks)."""

import pytest

from tests.micropython import check_extras
from tests.support.aio import run

CHECKS = sorted(name for name in dir(check_extras) if name.startswith("test_"))


@pytest.mark.parametrize("name", CHECKS)
def test_beyond_the_sdk(name):
    result = getattr(check_extras, name)()
    if result is not None:
        run(result, timeout=10)
