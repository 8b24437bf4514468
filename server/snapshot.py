"""A memory snapshot of Pyodide for the Pyodide page, made once by setup in Chromium.

Most of a Pyodide page's start is Pyodide's own interpreter start-up (Python initialising and
importing its modules: seconds on a loaded machine, cold or warm), not the download nor the
wasm compile. Pyodide can start instead from a snapshot of its memory taken just after that
(`loadPyodide({_makeSnapshot: true})` then `pyodide.makeMemorySnapshot()`; restored with
`loadPyodide({_loadSnapshot})`). bench/pyodide_snapshot.py measured a bare PyScript page
Python-ready in 0.29x the plain time.

Setup (`./dev setup`, `python -m server.snapshot`) makes the snapshot from the vendored Pyodide
in Chromium and writes, beside Pyodide in its versioned folder:

- `snapshot-sparse-<digest>.bin` (and its `.gz` and `.zst`): the snapshot without its empty
  pages (half of Pyodide's 30 MB memory is free heap, zeros): 14 MB, 6 MB gzipped, 4.5 MB as
  zstd. A warm load decodes it again from the HTTP cache;
- `snapshot-sparse-<digest>.mjs`: a module that PyScript takes as the page's `interpreter`
  instead of `pyodide.mjs`. PyScript builds loadPyodide's options itself and has no setting
  for a snapshot; this module rebuilds the memory from the sparse file, starts Pyodide with
  `_loadSnapshot` as soon as it is imported (PyScript calls loadPyodide only after it opened
  its IndexedDB package cache, which this page never reads; index.html imports the module
  while the page is parsed, before PyScript's own modules have run) and gives it the memory at
  once, of the size setup wrote into the module, so that Pyodide instantiates its wasm while
  the snapshot downloads and is rebuilt (its `fsInit` hook holds the restore until then; a
  warm load used to wait 100-200 ms for the snapshot, then instantiate for 110), hands that
  Pyodide to PyScript's loadPyodide call with its stdout and stderr, and records the
  snapshot's name in `globalThis.layercodePyodideSnapshot` (a test checks the page really
  started from it). It is runtime glue, like PyScript's config: the client library's only
  JavaScript remains its two audio worklets. A config that names packages gets `pyodide.mjs`
  instead (server/page.py): PyScript would pass them as options, which this module refuses
  with a clear error.

Both names carry a digest of the snapshot and of the loader's code, so they are cached as
immutable like the rest of the runtime, and a new snapshot or loader is a new URL. A snapshot
belongs to one Pyodide version: it lives in that version's folder (re-vendoring Pyodide removes
it, and setup makes a new one). Setup makes a new sparse snapshot without Chromium from the
sparse one when only the loader changed. The Pyodide page loads no Pyodide packages (the client
is unpacked from its wheel by PyScript), so the snapshot holds Python as Pyodide starts it, plus
the standard-library modules the page imports at start that Pyodide's start-up does not
(PRELOADED: `html`, which PyScript's package imports), with the heap frozen for the garbage
collector (PREPARE). The loader says so (RECIPE), and a
snapshot an earlier setup made by another recipe is made again (kept when there is no Chromium:
the page works with it, only slower).

When there is no snapshot (no Chromium, or this step failed or was skipped), the server names
`pyodide.mjs` as before: the page starts plain Pyodide (server/page.py).
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

from . import vendor
from .files import write_whole

PREFIX = "snapshot-sparse-"  # what the page loads: the snapshot without its empty pages
DIGEST_CHARS = 16
SPARSE_MAGIC = b"LCSP"
# The unit of emptiness, in bytes: of the 30 MB, 15.6 MB are empty 4 KB pages (15.7 at 1 KB).
SPARSE_PAGE = 4096
CHROMIUM = "/usr/bin/chromium"
MAKE_TIMEOUT_MS = 600_000  # a loaded 2-core machine takes tens of seconds

# The modules the page imports at start that Pyodide's own start-up does not (`html` and its
# `html.entities`: PyScript's package imports them, 70-150 ms of a warm load to import in the
# page), imported before the snapshot is taken so that the restore has them. Only modules that
# hold no JavaScript object can be: a snapshot holds none (PyScript's own package imports its
# JavaScript side, so it cannot be one). The page's list, checked by tests/browser/test_boot.py
# against what the page imports beyond the snapshot.
PRELOADED = ("html",)
# What the snapshot holds beyond Pyodide's start-up, written into its loader: setup makes the
# snapshot again when its recipe changed (an earlier setup's snapshot is not reused).
IMPORTS = f"import {', '.join(PRELOADED)}" if PRELOADED else "pass"  # `()`: nothing beyond
# Then every object Python holds is frozen (`gc.freeze()`): moved out of the collector's
# generations, so that the page's collections never scan the start-up's heap again. Unfrozen,
# the first collections after a restore scanned it: 10-20 ms, then 3-6 ms, in the two
# collections of a warm load to connected (`gc.callbacks`, 2026-12-02), against one of 2-3 ms
# with its 20,438 objects frozen; under a profiler's allocations, one of 70 ms during a
# connect.
PREPARE = f"{IMPORTS}; import gc; gc.freeze()"
RECIPE = f"// Python in the snapshot: Pyodide's start-up, then {PREPARE}"

# The page that makes the snapshot: Pyodide exactly as the demo page starts it (WebAssembly
# JSPI hidden, as index.html does), the PRELOADED modules imported and the heap frozen
# (PREPARE), then the snapshot taken.
MAKE_PAGE = b"""<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">
</head><body><script type="module">
delete WebAssembly.Suspending;
delete WebAssembly.promising;
const { loadPyodide } = await import("./pyodide.mjs");
const indexURL = new URL(".", location.href).href;
const pyodide = await loadPyodide({ indexURL, _makeSnapshot: true });
pyodide.runPython("%s");
const snapshot = pyodide.makeMemorySnapshot();
const answer = await fetch("./snapshot-upload", { method: "POST", body: snapshot });
document.body.dataset.done = String(answer.status);
</script></body></html>
""" % PREPARE.encode()

LOADER = """// Pyodide from its memory snapshot made by setup (server/snapshot.py): runtime glue.
{recipe}
import {{ loadPyodide as load, version }} from "./pyodide.mjs";
export {{ version }};
// The snapshot is stored without its empty pages (server/snapshot.py, `sparse`): header "LCSP",
// the memory's size, the number of runs, each run's offset and length (u32 little-endian), then
// the runs' bytes. The memory is rebuilt here: a new array is zero, so only the runs are copied.
const expand = (buffer, memory) => {{
  const words = new DataView(buffer);
  if (words.getUint32(0, true) !== 0x5053434c) throw new Error("not a sparse Pyodide snapshot");
  if (words.getUint32(4, true) !== memory.length) throw new Error("the snapshot's size changed");
  const runs = words.getUint32(8, true);
  let at = 12 + 8 * runs;
  for (let run = 0; run < runs; run++) {{
    const offset = words.getUint32(12 + 8 * run, true);
    const length = words.getUint32(16 + 8 * run, true);
    memory.set(new Uint8Array(buffer, at, length), offset);
    at += length;
  }}
}};
// Pyodide sizes its memory from the snapshot before it instantiates the wasm, and restores it
// after: it gets the memory (of the size setup wrote here) at once, and the wasm is instantiated
// while the snapshot downloads and is rebuilt into it; `fsInit`, which Pyodide awaits before it
// finishes starting (and restores), waits for that. A snapshot that fails to load fails
// `loadPyodide` below with its own error, and Pyodide stays waiting (it must not restore zeros).
let memory = new Uint8Array({size});
const filled = fetch(new URL("./{name}.bin", import.meta.url))
  .then((r) => {{
    if (!r.ok) throw new Error(`the Pyodide snapshot could not be loaded (HTTP ${{r.status}})`);
    return r.arrayBuffer();
  }})
  .then((buffer) => expand(buffer, memory))
  .finally(() => (memory = null));
const indexURL = new URL(".", import.meta.url).href;
// A thenable, not the array: Pyodide keeps its options, and 30 MB need not outlive the restore.
let snapshot = memory;
const once = {{ then: (ok) => (ok(snapshot), (snapshot = null)) }};
const fsInit = () => filled.catch(() => new Promise(() => {{}}));
// PyScript shows a failed loadPyodide nowhere: the page says so (index.html).
filled.catch((error) => globalThis.layercodeStartFailed?.(error.message));
// Pyodide starts as soon as PyScript imports this module, not when it calls loadPyodide: in
// between, PyScript opens its package cache (IndexedDB), which a page without packages never
// reads (50-90 ms of a warm load). PyScript passes only stdout and stderr then, which Pyodide
// takes the same way once started; a page with packages must name pyodide.mjs instead.
const started = Promise.all([load({{ indexURL, _loadSnapshot: once, fsInit }}), filled]);
started.catch(() => {{}}); // reported to PyScript when it calls loadPyodide, not twice
export const loadPyodide = ({{ stdout, stderr, indexURL: _, ...others }}) => {{
  const unknown = Object.keys(others).filter((name) => others[name] !== undefined);
  if (unknown.length)
    return Promise.reject(new Error(`The Pyodide snapshot's loader starts Pyodide before ` +
      `it is asked, so it takes no ${{unknown.join(", ")}}: name pyodide.mjs as the interpreter`));
  return started.then(([pyodide]) => {{
    if (stdout) pyodide.setStdout({{ batched: stdout }});
    if (stderr) pyodide.setStderr({{ batched: stderr }});
    globalThis.layercodePyodideSnapshot = "{name}";
    return pyodide;
  }});
}};
"""


def log(message: str) -> None:
    print(f"[snapshot] {message}", file=sys.stderr, flush=True)


def loader_name(folder: Path | None = None) -> str | None:
    """The file name of the snapshot's loader module in Pyodide's folder, or None if there is
    no complete snapshot (the loader is written last)."""
    folder = folder or vendor.PYODIDE.target
    for loader in sorted(folder.glob(PREFIX + "*.mjs")):
        if loader.with_suffix(".bin").is_file():
            return loader.name
    return None


def sparse(memory: bytes) -> bytes:
    """`memory` without its empty pages, as the loader (LOADER) rebuilds it.

    Half of Pyodide's 30 MB snapshot is zero pages (free heap). The browser keeps the gzipped
    snapshot in its HTTP cache and inflates it again on every warm load, and the page waits for
    it before Pyodide starts: leaving the empty pages out halves what is inflated and handed to
    the page (docs/startup.md has the A/B).
    """
    runs: list[list[int]] = []  # [offset, length] of the non-empty stretches
    for offset in range(0, len(memory), SPARSE_PAGE):
        page = memory[offset : offset + SPARSE_PAGE]
        if page.count(0) != len(page):
            if runs and runs[-1][0] + runs[-1][1] == offset:
                runs[-1][1] += len(page)
            else:
                runs.append([offset, len(page)])
    header = SPARSE_MAGIC + struct.pack("<II", len(memory), len(runs))
    header += b"".join(struct.pack("<II", offset, length) for offset, length in runs)
    return header + b"".join(memory[offset : offset + length] for offset, length in runs)


def expand(data: bytes) -> bytes:
    """The memory `sparse` left out the empty pages of (what LOADER does in the page)."""
    if data[:4] != SPARSE_MAGIC:
        raise ValueError("not a sparse Pyodide snapshot")
    size, count = struct.unpack_from("<II", data, 4)
    memory = bytearray(size)
    at = 12 + 8 * count
    for run in range(count):
        offset, length = struct.unpack_from("<II", data, 12 + 8 * run)
        memory[offset : offset + length] = data[at : at + length]
        at += length
    return bytes(memory)


def reusable_snapshot(folder: Path) -> bytes | None:
    """The memory of the snapshot an earlier setup made by today's RECIPE, rebuilt from its
    sparse form (to write it with a new loader without starting Chromium), or None. A snapshot
    made by another recipe (or a full one kept by setups before the sparse form, which preloaded
    nothing) is not reused: it lacks what the page now finds in it."""
    name = loader_name(folder)
    if name is None or RECIPE not in (folder / name).read_text():
        return None
    return expand((folder / name).with_suffix(".bin").read_bytes())


def snapshot_name(sparse_data: bytes) -> str:
    """The snapshot's files' name: a digest of the snapshot and of its loader's code, so that a
    new loader is a new URL too (both are cached as immutable)."""
    code = (LOADER + RECIPE).encode()
    return PREFIX + hashlib.sha256(sparse_data + code).hexdigest()[:DIGEST_CHARS]


def make_snapshot(folder: Path) -> bytes:
    """Start Pyodide from `folder` in Chromium with `_makeSnapshot` and return its snapshot."""
    from playwright.sync_api import sync_playwright  # a test dependency: only setup needs it

    received: list[bytes] = []

    class Handler(SimpleHTTPRequestHandler):
        extensions_map: ClassVar[dict[str, str]] = {
            **SimpleHTTPRequestHandler.extensions_map,
            ".wasm": "application/wasm",
            ".mjs": "text/javascript",
        }

        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/make.html":
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(MAKE_PAGE)))
                self.end_headers()
                self.wfile.write(MAKE_PAGE)
                return
            super().do_GET()

        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{server.server_address[1]}/make.html")
                page.wait_for_selector("body[data-done]", state="attached", timeout=MAKE_TIMEOUT_MS)
                status = page.get_attribute("body", "data-done")
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
    if status != "204" or not received:
        raise RuntimeError(f"the snapshot page ended with status {status}")
    return received[0]


def main() -> None:
    folder = vendor.PYODIDE.target
    if not (folder / vendor.DONE_MARKER).is_file():
        log("Pyodide is not vendored: run ./dev setup")
        return
    data = reusable_snapshot(folder)
    if data is None:
        if not Path(CHROMIUM).is_file():
            if loader_name(folder):
                log("no Chromium: the Pyodide page keeps the snapshot an earlier setup made")
                return
            log("no Chromium: the Pyodide page starts without a snapshot (./dev setup installs it)")
            return
        log(f"making a memory snapshot of Pyodide {vendor.PYODIDE.version} in Chromium")
        try:
            data = make_snapshot(folder)
        except Exception as error:  # the page works without: say so and go on
            log(f"could not make the snapshot ({error}): the Pyodide page starts without one")
            return
    data = sparse(data)
    name = snapshot_name(data)
    if (folder / f"{name}.mjs").is_file():
        vendor.add_zstd(folder)  # a snapshot made before the runtime was served as zstd
        log("Pyodide snapshot already in place")
        return
    for stale in folder.glob(PREFIX + "*"):
        stale.unlink()
    (folder / f"{name}.bin").write_bytes(data)
    (folder / f"{name}.bin.gz").write_bytes(gzip.compress(data, compresslevel=6, mtime=0))
    vendor.add_zstd(folder)
    size = struct.unpack_from("<I", data, 4)[0]  # the memory's, from the sparse header
    loader = LOADER.format(name=name, size=size, recipe=RECIPE).encode()
    write_whole(folder / f"{name}.mjs", loader)  # last: it means a complete snapshot
    log(f"wrote {name}.bin ({len(data) / 2**20:.0f} MB) and its loader {name}.mjs")


if __name__ == "__main__":
    main()
