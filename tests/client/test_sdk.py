"""The JS SDK 2.8.10 surface under pytest: every check of tests/micropython/check_sdk.py (the
same checks the MicroPython runner runs), one pytest test each."""

import pytest

from tests.micropython import check_sdk
from tests.support.aio import run

CHECKS = sorted(name for name in dir(check_sdk) if name.startswith("test_"))


@pytest.mark.parametrize("name", CHECKS)
def test_sdk_surface(name):
    result = getattr(check_sdk, name)()
    if result is not None:
        run(result, timeout=10)
