"""Export the page and its runtime as a self-contained static folder.

It holds both pages: `index.html` on MicroPython and `index.html?py=pyodide` on Pyodide. As the
server does, the page names its files under content-hashed paths (`v/<digest>/...`, written
here too): a host may cache everything but index.html for a year (server/page.py).
The folder can be hosted anywhere (a CDN of your own, object storage, GitHub Pages): every path
in it is relative, the runtime is inside it, and the authorize endpoint's URL is written into
the page at export. That endpoint stays on a server (this one, with CORS_ALLOW_ORIGINS naming
the static site's origin), because the Layercode API key must never reach a browser.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from . import page, vendor
from .static import ASSETS_DIR, ROOT, render_page
from .wheel import MPY_URL_PATH, build_mpy_files, build_wheel

# A full Pyodide snapshot an earlier setup left (`snapshot-<digest>.*`, 30 MB) is not the page's:
# it loads the sparse one (`snapshot-sparse-<digest>.*`, server/snapshot.py).
SKIPPED_RUNTIME_FILES = ("*.gz", "*.zst", vendor.DONE_MARKER, vendor.FULL_SNAPSHOT)


def export_site(target: Path, authorize_url: str, pipeline_id: str = "demo") -> Path:
    if not vendor.is_vendored():
        raise SystemExit("the runtime is not vendored yet: run ./dev setup first")
    if not authorize_url.startswith(("http://", "https://", "/")):
        raise SystemExit("--authorize-url must be an absolute URL (https://...) or a path (/...)")
    target = target.resolve()
    if target.exists() and any(target.iterdir()):
        if not (target / "index.html").is_file():
            raise SystemExit(f"{target} is not empty and is not an earlier export; choose another")
        shutil.rmtree(target)
    target.mkdir(parents=True, exist_ok=True)

    built, compiled = build_wheel(), build_mpy_files()
    files = page.collect(ROOT, built, compiled)
    (target / "index.html").write_bytes(render_page(authorize_url, pipeline_id, files))
    for path, data in files.files.items():
        hashed = target / files.url(path)
        hashed.parent.mkdir(parents=True, exist_ok=True)
        hashed.write_bytes(data)
    for name in ("main.py", "pyscript.toml", "pyscript-pyodide.toml"):
        shutil.copy(ROOT / name, target / name)
    shutil.copytree(ASSETS_DIR, target / "assets")
    (target / "client").mkdir()
    (target / "client" / built.filename).write_bytes(built.data)
    for name, data in compiled.items():
        path = target / MPY_URL_PATH.strip("/") / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for package in vendor.PAGE_RUNTIMES:
        destination = target / "runtime" / package.folder / package.version
        shutil.copytree(
            package.target, destination, ignore=shutil.ignore_patterns(*SKIPPED_RUNTIME_FILES)
        )
    return target
