"""The client's portable checks (runner.py), on CPython and on the page's MicroPython build.

Under Node, MicroPython starts in a quarter of a second, so a construct only CPython has
(a dataclass, `asyncio.shield`, `{**a}`, a `/` in a signature) fails here in seconds instead of
in the browser.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

from server import vendor
from tests.micropython import runner
from tests.support.aio import run

RUN_MJS = Path(__file__).with_name("run.mjs")


def test_the_checks_pass_on_cpython():
    assert run(runner.main()) == 0


def test_the_checks_pass_on_micropython():
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is needed to run MicroPython (./dev setup needs it too)")
    engine = vendor.MICROPYTHON.target / "micropython.mjs"
    assert engine.is_file(), "run ./dev setup to vendor MicroPython"
    result = subprocess.run(
        [node, str(RUN_MJS), str(engine)], capture_output=True, text=True, timeout=120
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "micropython: " in output and " 0 failed" in output, output
