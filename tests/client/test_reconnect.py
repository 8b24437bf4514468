"""Reconnect and resume under pytest: every check of tests/micropython/check_reconnect.py (the
same checks the MicroPython runner runs), one pytest test each."""

import pytest

from tests.micropython import check_reconnect
from tests.support.aio import run

CHECKS = sorted(name for name in dir(check_reconnect) if name.startswith("test_"))


@pytest.mark.parametrize("name", CHECKS)
def test_reconnect(name):
    result = getattr(check_reconnect, name)()
    if result is not None:
        run(result, timeout=10)
