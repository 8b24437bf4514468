"""The client precompiled to the bytecode of the vendored Pyodide's Python, for the Pyodide page.

The Pyodide page unpacks the client from its wheel and imports it; without bytecode, Python
compiles its 140 KB of source on every load, cold or warm: 181 ms of a warm load at load
average 1-4, 321 ms cold (`./dev bench phases`). Under Node, the vendored Pyodide compiles
those sources in 116-135 ms and unmarshals them in 6-15 ms. So the wheel carries
`layercode_client/__pycache__/<module>.<cache tag>.pyc` beside each source file, and Python
loads those instead of compiling.

The files are *checked hash-based* .pyc (PEP 552): Python hashes the source it imports and uses
the .pyc only if the hash it holds matches, so a .pyc that no longer matches its source is
ignored (the source is compiled as before), never run in its place. They are made by the
vendored Pyodide itself under Node, by setup (`python -m server.pyc`, which `./dev` runs), and
kept in `.cache/pyodide-pyc/<Pyodide version>/`, one file per source digest: a changed module
gets its bytecode at the next setup (which removes the old one), and until then the server
leaves it out of the wheel.
Without Node or that step the wheel has no bytecode and the page compiles the client as before.
(MicroPython's page has its own precompiled client: server/wheel.py.)
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from . import vendor
from .files import write_whole

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = ROOT / ".cache" / "pyodide-pyc"
COMPILE_TIMEOUT_S = 300  # Pyodide starts in seconds under Node, tens of them on a loaded machine
DIGEST_CHARS = 32

# Reads {name: source} as JSON on stdin, answers {"tag": cache tag, "pyc": {name: base64}}.
COMPILER = """
import { loadPyodide } from %(module)s;
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const pyodide = await loadPyodide({ indexURL: %(index)s, stdout: () => {}, stderr: () => {} });
pyodide.globals.set("sources", JSON.stringify(JSON.parse(Buffer.concat(chunks).toString())));
process.stdout.write(pyodide.runPython(`
import base64, importlib.util, json, sys
from importlib._bootstrap_external import _code_to_hash_pyc
def pyc(name, source):
    data = source.encode()
    code = compile(data, name, "exec", dont_inherit=True)
    return _code_to_hash_pyc(code, importlib.util.source_hash(data), checked=True)
compiled = {n: base64.b64encode(pyc(n, s)).decode() for n, s in json.loads(sources).items()}
json.dumps({"tag": sys.implementation.cache_tag, "pyc": compiled})
`));
"""


def log(message: str) -> None:
    print(f"[pyc] {message}", file=sys.stderr, flush=True)


def digest(source: bytes) -> str:
    return hashlib.sha256(source).hexdigest()[:DIGEST_CHARS]


def cache_folder() -> Path:
    return CACHE_DIR / vendor.PYODIDE.version


def bytecode_for(sources: list[tuple[str, bytes]], folder: Path | None = None) -> dict[str, bytes]:
    """The `__pycache__` entries for those of `sources` (`(path in the wheel, data)`) whose
    bytecode setup made: {`pkg/__pycache__/mod.<tag>.pyc`: .pyc data}."""
    folder = folder or cache_folder()
    entries = {}
    for name, data in sources:
        if not name.endswith(".py"):
            continue
        for pyc in folder.glob(f"{digest(data)}.*.pyc"):
            tag = pyc.name.split(".")[1]
            parent, _, module = name.rpartition("/")
            entries[f"{parent}/__pycache__/{module[:-3]}.{tag}.pyc"] = pyc.read_bytes()
    return entries


def compile_with_pyodide(sources: dict[str, bytes], node: str) -> tuple[str, dict[str, bytes]]:
    """Compile `sources` ({name: data}) with the vendored Pyodide under Node: (tag, {name: pyc})."""
    folder = vendor.PYODIDE.target
    script = COMPILER % {
        "module": json.dumps((folder / "pyodide.mjs").as_uri()),
        "index": json.dumps(str(folder) + "/"),
    }
    answer = subprocess.run(
        [node, "--input-type=module", "-e", script],
        input=json.dumps({n: d.decode() for n, d in sources.items()}).encode(),
        capture_output=True,
        timeout=COMPILE_TIMEOUT_S,
        check=True,
    )
    result = json.loads(answer.stdout)
    return result["tag"], {n: base64.b64decode(p) for n, p in result["pyc"].items()}


def main() -> None:
    from .wheel import SOURCE_DIR, _source_files

    if not (vendor.PYODIDE.target / vendor.DONE_MARKER).is_file():
        log("Pyodide is not vendored: run ./dev setup")
        return
    node = shutil.which("node")
    if node is None:
        log("no Node: the Pyodide page compiles the client in the browser")
        return
    folder = cache_folder()
    sources = dict(_source_files(SOURCE_DIR))
    missing = {
        name: data
        for name, data in sources.items()
        if name.endswith(".py") and not any(folder.glob(f"{digest(data)}.*.pyc"))
    }
    current = {digest(d) for d in sources.values()}
    for stale in folder.glob("*.pyc"):  # bytecode of sources edited since: at most one per module
        if stale.name.split(".")[0] not in current:
            stale.unlink()
    if not missing:
        return
    log(f"compiling {len(missing)} client modules with Pyodide {vendor.PYODIDE.version}")
    try:
        tag, compiled = compile_with_pyodide(missing, node)
    except (OSError, subprocess.SubprocessError, ValueError, KeyError) as error:
        log(f"could not compile ({error}): the Pyodide page compiles the client in the browser")
        return
    folder.mkdir(parents=True, exist_ok=True)
    for name, pyc in compiled.items():
        write_whole(folder / f"{digest(missing[name])}.{tag}.pyc", pyc)


if __name__ == "__main__":
    main()
