"""Startup benchmark: page load → Python ready, cold (fresh profile) and warm (reload).

Our page on each interpreter — MicroPython (the default) and Pyodide (`?py=pyodide`) — side by
side in the same run with its reference: a bare PyScript page on the same interpreter that only
marks itself ready, on the same server and runtime, which is the floor any PyScript page pays;
our Pyodide page installing the client wheel with micropip (`packages`) instead of
unpacking it (`[files]`); and our MicroPython page importing the client from source (the
wheel) instead of from the precompiled `.mpy` bundle — the choices the page makes by this
measurement. Each figure is the
median of N runs (default 5), read inside the page (`performance.now()` when Python marks the
page ready), so it excludes Playwright's own overhead.

    ./dev bench startup [--runs N]
"""

import argparse
import tempfile
from pathlib import Path

from common import chromium_launch_args, median, print_table, save, serve
from playwright.sync_api import sync_playwright
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from server import vendor
from server.app import create_app
from server.config import Settings
from server.static import render_index
from server.wheel import wheel_filename

PYODIDE_MJS = f"../runtime/pyodide/{vendor.PYODIDE.version}/pyodide.mjs"
MICROPYTHON_MJS = f"../runtime/micropython/{vendor.MICROPYTHON.version}/micropython.mjs"
REFERENCE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<script type="module" src="../runtime/pyscript/{pyscript}/core.js"></script>
</head><body data-state="loading">
<script type="{type}" config='{{"interpreter": "{interpreter}"}}'>
import js
js.document.body.dataset.readyMs = str(round(js.performance.now()))
js.document.body.dataset.state = "ready"
</script></body></html>
"""


def reference_page(script_type: str, interpreter: str) -> str:
    return REFERENCE_PAGE.format(
        pyscript=vendor.PYSCRIPT.version, type=script_type, interpreter=interpreter
    )


def micropip_variant(folder: Path) -> Path:
    """Our page, in a subfolder, installing the client wheel with micropip."""
    folder.mkdir()
    page = render_index("/api/authorize", "demo").decode()
    for shared in ("runtime/", "assets/", "main.py"):
        page = page.replace(f'"./{shared}', f'"../{shared}')
    page = page.replace('"./client/', '"../client/')
    (folder / "index.html").write_text(page)
    (folder / "pyscript-pyodide.toml").write_text(
        f'interpreter = "{PYODIDE_MJS}"\npackages = ["/client/{wheel_filename()}"]\n'
    )
    return folder


def source_variant(folder: Path) -> Path:
    """Our MicroPython page, in a subfolder, importing the client from source (the wheel)."""
    folder.mkdir()
    page = render_index("/api/authorize", "demo").decode()
    for shared in ("runtime/", "assets/", "main.py", "client/"):
        page = page.replace(f'"./{shared}', f'"../{shared}')
    (folder / "index.html").write_text(page)
    (folder / "pyscript.toml").write_text(
        f'interpreter = "{MICROPYTHON_MJS}"\n[files]\n"../client/{wheel_filename()}" = "./*"\n'
    )
    return folder


def bench_app(reference_dir: Path):
    # Nothing here connects: the cloud proxy's settings spare the embedded pipeline's start
    # (its speech models), which took over 30 s on a loaded machine.
    app = create_app(Settings(layercode_api_key="bench-never-used"))
    return Starlette(
        routes=[
            Mount("/reference", StaticFiles(directory=reference_dir, html=True)),
            Mount("/micropip", StaticFiles(directory=reference_dir / "micropip", html=True)),
            Mount("/source", StaticFiles(directory=reference_dir / "source", html=True)),
            Mount("/", app),
        ],
        lifespan=lambda _: app.router.lifespan_context(app),
    )


def ready_ms(page) -> float:
    page.wait_for_selector("body[data-state=ready]", state="attached", timeout=120_000)
    return float(page.get_attribute("body", "data-ready-ms"))


def measure(browser, url: str, runs: int) -> dict[str, list[float]]:
    cold, warm = [], []
    for _ in range(runs):
        context = browser.new_context()  # a fresh profile: empty HTTP and code caches
        page = context.new_page()
        page.goto(url)
        cold.append(ready_ms(page))
        page.reload()
        warm.append(ready_ms(page))
        context.close()
    return {"cold_ms": cold, "warm_ms": warm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "index.html").write_text(reference_page("py", PYODIDE_MJS))
        (Path(tmp) / "mpy.html").write_text(reference_page("mpy", MICROPYTHON_MJS))
        micropip_variant(Path(tmp) / "micropip")
        source_variant(Path(tmp) / "source")
        with serve(bench_app(Path(tmp))) as base, sync_playwright() as playwright:
            browser = playwright.chromium.launch(**chromium_launch_args())
            results = {}
            pages = (
                ("MicroPython page", "/"),
                ("MicroPython page, from source", "/source/"),
                ("bare mpy page", "/reference/mpy.html"),
                ("Pyodide page", "/?py=pyodide"),
                ("bare py page", "/reference/"),
                ("Pyodide page, micropip", "/micropip/?py=pyodide"),
            )
            for name, path in pages:
                measure(browser, base + path, 1)  # warm the server and the OS page cache
                results[name] = measure(browser, base + path, args.runs)
            browser.close()
    rows = []
    for kind in ("cold_ms", "warm_ms"):
        mpy, mpy_source, mpy_bare, py, py_bare, pip = (
            median(results[name][kind])
            for name in ("MicroPython page", "MicroPython page, from source", "bare mpy page",
                         "Pyodide page", "bare py page", "Pyodide page, micropip")
        )  # fmt: skip
        rows.append(
            [kind.replace("_ms", ""), mpy, mpy_source, mpy_bare, f"{mpy / mpy_bare:.2f}", py,
             py_bare, f"{py / py_bare:.2f}", pip]
        )  # fmt: skip
    header = ["", "MicroPython page", "mpy from source", "bare mpy", "ours/bare",
              "Pyodide page", "bare py", "ours/bare", "Pyodide via micropip"]  # fmt: skip
    print_table(f"Page load → Python ready, median of {args.runs} runs (ms)", header, rows)
    save(
        "startup",
        {
            "runs": args.runs,
            "medians_ms": {
                name: {k: median(v) for k, v in r.items()} for name, r in results.items()
            },
            "samples_ms": results,
        },
    )


if __name__ == "__main__":
    main()
