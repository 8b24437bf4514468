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


IMPORT_COMPILED = """
import { readFileSync } from "node:fs";
const [engine, folder, ...names] = process.argv.slice(1);
const { loadMicroPython } = await import(engine);
const print = (line) => console.log(line);
const mp = await loadMicroPython({ stdout: print, stderr: print });
mp.FS.mkdirTree("/lib/layercode_client");
for (const name of names) mp.FS.writeFile("/lib/" + name, readFileSync(folder + "/" + name));
mp.runPython(`import sys
sys.path.insert(0, "/lib")
import layercode_client, layercode_client.client, layercode_client.vad
print("imported", layercode_client.__file__)`);
"""


def test_the_precompiled_client_imports_on_micropython(tmp_path):
    """The page's .mpy files (server/wheel.py) load in the vendored MicroPython: a bytecode
    version that MicroPython refuses would fail here, not in a page that never becomes ready."""
    from server.wheel import build_mpy_files

    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is needed to run MicroPython (./dev setup needs it too)")
    compiled = {n: data for n, data in build_mpy_files().items() if n.endswith(".mpy")}
    for name, data in compiled.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    engine = (vendor.MICROPYTHON.target / "micropython.mjs").as_uri()
    result = subprocess.run(
        [node, "--input-type=module", "-e", IMPORT_COMPILED, engine, str(tmp_path), *compiled],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "imported /lib/layercode_client/__init__.mpy" in output, output
