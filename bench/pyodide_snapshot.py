"""What Pyodide's memory snapshot would give a PyScript page: Python-ready, with and without.

Pyodide's start is mostly its own interpreter's start-up (`API.finalizeBootstrap` in a CPU
profile of the Pyodide page: Python initialising and importing its modules, seconds on this
machine, warm or cold), not the download nor the wasm compile. Pyodide can start instead from a
snapshot of its memory taken just after that (`loadPyodide({_makeSnapshot: true})`, then
`pyodide.makeMemorySnapshot()`; restored with `loadPyodide({_loadSnapshot})`). PyScript 0.7.31
builds loadPyodide's options itself (indexURL, stdout/stderr, packages) and has no setting for
it, but it takes any module as `interpreter`: here a four-line module that re-exports Pyodide's
`loadPyodide` with `_loadSnapshot` added.

This bench makes a snapshot in Chromium from the vendored Pyodide, then loads the same bare
PyScript `py` page (it imports `pyscript` and marks itself ready) on plain Pyodide and on the
snapshot, side by side, each in a fresh browser context, and prints the medians. The snapshot
(30 MB, 6 MB gzipped) is served plain from a temporary folder. The demo page starts from the
snapshot setup makes (server/snapshot.py); this measures the snapshot alone.

    ./dev bench pyodide_snapshot [--runs N]
"""

import argparse
import tempfile
from pathlib import Path

from common import chromium_launch_args, median, print_table, save, serve
from playwright.sync_api import sync_playwright
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from server import vendor
from server.app import create_app
from server.config import Settings

RUNTIME = f"/runtime/pyodide/{vendor.PYODIDE.version}/"
WRAPPER = f"""import {{ loadPyodide as load, version }} from "{RUNTIME}pyodide.mjs";
export {{ version }};
export const loadPyodide = (options) => load({{ ...options, indexURL: "{RUNTIME}",
  _loadSnapshot: fetch("/snap/snapshot.bin").then((r) => r.arrayBuffer()) }});
"""
MAKE = f"""<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">
</head><body><script type="module">
import {{ loadPyodide }} from "{RUNTIME}pyodide.mjs";
const pyodide = await loadPyodide({{ indexURL: "{RUNTIME}", _makeSnapshot: true }});
const snapshot = pyodide.makeMemorySnapshot();
await fetch("/snap/save", {{ method: "POST", body: snapshot }});
document.body.dataset.bytes = String(snapshot.length);
</script></body></html>
"""
PAGE = """<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<script type="module" src="/runtime/pyscript/{pyscript}/core.js"></script></head><body>
<script type="py" config='{{"interpreter": "{interpreter}"}}'>
import js
from pyscript import document
document.body.dataset.readyMs = str(round(js.performance.now()))
</script></body></html>
"""
PAGES = {
    "plain Pyodide": f"{RUNTIME}pyodide.mjs",
    "from a snapshot": "/snap/pyodide-snapshot.mjs",
}


def bench_app(folder: Path) -> Starlette:
    app = create_app(Settings(layercode_api_key="bench-never-used"))  # no pipeline to start

    async def save_snapshot(request: Request) -> Response:
        (folder / "snapshot.bin").write_bytes(await request.body())
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/snap/save", save_snapshot, methods=["POST"]),
            Mount("/snap", StaticFiles(directory=folder)),
            Mount("/", app),
        ],
        lifespan=lambda _: app.router.lifespan_context(app),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, list[float]] = {name: [] for name in PAGES}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "pyodide-snapshot.mjs").write_text(WRAPPER)
        (folder / "make.html").write_text(MAKE)
        for n, interpreter in enumerate(PAGES.values()):
            page = PAGE.format(pyscript=vendor.PYSCRIPT.version, interpreter=interpreter)
            (folder / f"page{n}.html").write_text(page)
        with serve(bench_app(folder)) as base, sync_playwright() as playwright:
            browser = playwright.chromium.launch(**chromium_launch_args())
            page = browser.new_page()
            page.goto(base + "/snap/make.html")
            page.wait_for_selector("body[data-bytes]", state="attached", timeout=300_000)
            snapshot_mb = int(page.get_attribute("body", "data-bytes")) / 2**20
            page.close()
            for _ in range(args.runs):
                for n, name in enumerate(PAGES):  # interleaved: both see the same conditions
                    context = browser.new_context()  # empty HTTP and code caches
                    page = context.new_page()
                    page.goto(f"{base}/snap/page{n}.html")
                    page.wait_for_selector("body[data-ready-ms]", state="attached", timeout=300_000)
                    results[name].append(float(page.get_attribute("body", "data-ready-ms")))
                    context.close()
            browser.close()
    plain, snapshot = (median(results[name]) for name in PAGES)
    print_table(
        f"Bare PyScript py page → Python ready, cold, median of {args.runs} (snapshot "
        f"{snapshot_mb:.0f} MB)",
        ["", "plain Pyodide", "from a snapshot", "snapshot/plain"],
        [["ready (ms)", plain, snapshot, f"{snapshot / plain:.2f}"]],
    )
    save("pyodide_snapshot", {"runs": args.runs, "snapshot_mb": snapshot_mb, "ready_ms": results})


if __name__ == "__main__":
    main()
