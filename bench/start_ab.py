"""A/B of a change to the page's start: page load → ready and → `connected`, cold and warm, for
the page as it is and as it was before the change, interleaved in one run on one server (the
machine is shared and loaded: only runs side by side compare).

The older variant is today's page with the change taken out of its HTML: a rewrite named in
VARIANTS, applied by a thin wrapper around the app to `/` when the page is asked for with
`?ab=<name>` (the page itself ignores the parameter); a variant may point the page at a file of
its own (a client module built the old way), which the wrapper serves under `/ab/`. Each run
starts Chromium on a new, empty profile: the load is cold, the reload in that profile warm (as
`./dev bench client` measures them). The page connects by itself the moment it is ready
(bench/client.py's probe) through the embedded pipeline, and the official SDK's page runs in
the same rotation as the reference.

    ./dev bench start_ab [--runs 4]
                         [--variants plugins,wheel,late_recorder,gzip,raw,late_start,late_player,
                                     main_as_script]
                         [--pages micropython,pyodide]
"""

import argparse
import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from client import fresh_profile, room_noise_wav
from common import median, print_table, save, serve
from playwright.sync_api import sync_playwright

from server import page as page_files
from server import snapshot, static, vendor
from server.app import create_app
from server.config import Settings
from server.wheel import compile_mpy
from tests.support.official_sdk import with_official_sdk


def without_plugin_changes(page: str) -> str:
    """Before: no preload of PyScript's error plugin, and no config for the other interpreter
    (so PyScript loaded every optional plugin for it)."""
    page = re.sub(r'\s*<link rel="modulepreload" href="[^"]*/error-[^"]*\.js">', "", page)
    return page.replace("document.head.append(otherConfig);", "")


def with_loader(name: str):
    """The Pyodide page started by another snapshot loader (an earlier one's files, put beside
    today's in Pyodide's folder for the A/B): `--loader-before NAME`."""
    today = snapshot.loader_name()
    others = sorted(p.name for p in vendor.PYODIDE.target.glob(snapshot.PREFIX + "*.mjs"))
    if name not in others:
        raise SystemExit(f"no loader {name} in {vendor.PYODIDE.target} (there: {others})")
    return lambda page: page.replace(today, name)


def with_the_wheel(page: str) -> str:
    """The other form of the Pyodide page's client: its wheel, which PyScript unpacks in Python,
    against its files named one by one (server/page.py, FILE_BY_FILE; the page has the wheel
    since the A/B of 2026-11-30, so this variant is the files)."""
    files = static.current_page_files(SERVED["app"].state)
    path = static.ROOT / "pyscript-pyodide.toml"

    def config(file_by_file: bool) -> str:
        keep, page_files.FILE_BY_FILE = page_files.FILE_BY_FILE, file_by_file
        try:
            return json.dumps(page_files.config_json(path, files)).replace("<", "\\u003c")
        finally:
            page_files.FILE_BY_FILE = keep

    today = page_files.FILE_BY_FILE
    return page.replace(config(today), config(not today))


def with_late_recorder(page: str) -> str:
    """Before: the recorder's AudioContext made after the microphone's grant, not beside it:
    the MicroPython page's client with `layercode_client.browser.EARLY_RECORDER_CONTEXT` off
    (that module compiled again, served beside the page). The Pyodide page is left as it is:
    its setup-made bytecode would not match the changed source."""
    path = "client/mpy/layercode_client/browser.mpy"
    if "late_recorder.mpy" not in AB_FILES:
        source = (static.ROOT / "layercode_client" / "browser.py").read_text()
        late = source.replace("EARLY_RECORDER_CONTEXT = True", "EARLY_RECORDER_CONTEXT = False")
        if late == source:
            raise SystemExit("layercode_client/browser.py has no EARLY_RECORDER_CONTEXT = True")
        compiled = compile_mpy([("layercode_client/browser.py", late.encode())])
        AB_FILES["late_recorder.mpy"] = compiled["layercode_client/browser.mpy"]
    files = static.current_page_files(SERVED["app"].state)
    return page.replace(f"./{files.url(path)}", "./ab/late_recorder.mpy")


def with_late_player(page: str) -> str:
    """Before: the player's AudioContext and worklet made at the click, not while the page gets
    ready: main.py without its `client.prepare_audio()` (served beside the page, for both
    interpreters: main.py is the same file on each)."""
    if "late_player.py" not in AB_FILES:
        source = (static.ROOT / "main.py").read_text()
        late = source.replace("\nclient.prepare_audio()\n", "\n")
        if late == source:
            raise SystemExit("main.py no longer calls client.prepare_audio() on a line of its own")
        AB_FILES["late_player.py"] = late.encode()
    files = static.current_page_files(SERVED["app"].state)
    return page.replace(f"./{files.url('main.py')}", "./ab/late_player.py")


def with_late_start(page: str) -> str:
    """Before: the Pyodide snapshot's loader only preloaded by index.html (`modulepreload`), so
    Pyodide started when PyScript imported it, once PyScript's own modules had run; now the
    page imports it at once."""
    now = "startNow = layercodePage.runtime + loader;"
    if now not in page:
        raise SystemExit("index.html no longer imports the snapshot's loader as this expects")
    return page.replace(now, 'early("modulepreload", layercodePage.runtime + loader);')


def with_main_as_script(page: str) -> str:
    """Before: the Pyodide page ran main.py as its script's source (`runPythonAsync`, which
    tokenizes the code and walks its syntax tree in Python), as the MicroPython page still
    does; now its script imports main.py, which its config writes into the file system."""
    now = 'if (layercodePage.type === "py") main.textContent = "import main";\n    else main.src'
    if now not in page:
        raise SystemExit("index.html no longer imports main.py on Pyodide as this expects")
    return page.replace(now, "main.src")


def with_runtime_encoding(encoding: str | None):
    """Before: the runtime sent as gzip, not zstd (server/static.py): the page's runtime URLs
    under `/abenc/<encoding>/`, which the wrapper serves as the app does to a browser that
    accepts only gzip. `raw` (no coding at all: nothing to decode on a warm load) is the
    bound zstd is measured against."""
    return lambda page: page.replace('"./runtime/', f'"./abenc/{encoding or "raw"}/runtime/')


def zstd_runtime(folder: Path) -> None:
    """Serve the runtime from a copy in `folder` with the `.zst` files setup writes, when the
    vendored one predates them (made here once: about 20 s)."""
    if any(vendor.VENDOR_DIR.rglob("*.zst")):
        return
    print("  the vendored runtime has no .zst files: making them in a copy")
    shutil.copytree(vendor.VENDOR_DIR, folder, ignore=shutil.ignore_patterns(vendor.FULL_SNAPSHOT))
    vendor.add_zstd_to_runtimes(folder)
    static.VENDOR_DIR = folder


SERVED: dict = {}  # the app, for rewrites that need its files
AB_FILES: dict[str, bytes] = {}  # a variant's own files, served at /ab/<name>
VARIANTS = {
    "none": lambda page: page,
    "plugins": without_plugin_changes,
    "wheel": with_the_wheel,
    "late_recorder": with_late_recorder,
    "gzip": with_runtime_encoding("gzip"),
    "raw": with_runtime_encoding(None),
    "late_start": with_late_start,
    "late_player": with_late_player,
    "main_as_script": with_main_as_script,
}
PAGES = {"micropython": "/", "pyodide": "/?py=pyodide"}
OFFICIAL = "/official.html"


def with_variants(app):
    """`app`, with `/` rewritten by VARIANTS[name] when asked for with `?ab=<name>`."""

    async def wrapped(scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/ab/"):
            data = AB_FILES.get(scope["path"].removeprefix("/ab/"))
            if data is None:
                return await app(scope, receive, send)  # its 404
            headers = [(b"content-length", str(len(data)).encode()),
                       (b"cache-control", b"public, max-age=31536000, immutable")]  # fmt: skip
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": data})
            return
        if scope["type"] == "http" and scope["path"].startswith("/abenc/"):
            _, _, encoding, rest = scope["path"].split("/", 3)
            headers = [h for h in scope["headers"] if h[0] != b"accept-encoding"]
            if encoding != "raw":
                headers.append((b"accept-encoding", encoding.encode()))
            path = "/" + rest
            scope = {**scope, "path": path, "raw_path": path.encode(), "headers": headers}
            return await app(scope, receive, send)
        query = scope.get("query_string", b"").decode()
        match = re.search(r"(?:^|&)ab=([a-z_]+)", query)
        if scope["type"] != "http" or scope["path"] != "/" or not match:
            return await app(scope, receive, send)
        rewrite = VARIANTS[match.group(1)]
        start: dict = {}

        async def capture(message):
            if message["type"] == "http.response.start":
                start.update(message)
                return
            body = rewrite(message.get("body", b"").decode()).encode()
            headers = [(k, v) for k, v in start["headers"] if k not in (b"content-length", b"etag")]
            headers.append((b"content-length", str(len(body)).encode()))
            headers.append((b"cache-control", b"no-store"))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        # No ETag (the page itself is always sent, to be rewritten), no compression.
        dropped = (b"if-none-match", b"accept-encoding")
        scope = {**scope, "headers": [h for h in scope["headers"] if h[0] not in dropped]}
        await app(scope, receive, capture)

    return wrapped


def load(page, reload: bool) -> dict:
    page.reload() if reload else page.goto(page.bench_url)
    page.wait_for_selector("body[data-connected-ms]", state="attached", timeout=120_000)
    figures = {"connected": float(page.get_attribute("body", "data-connected-ms"))}
    ready = page.get_attribute("body", "data-ready-ms")
    if ready is not None:
        figures["ready"] = float(ready)
    return figures


def one_run(playwright, url: str, wav: Path) -> dict:
    with fresh_profile(playwright, url, wav) as (_context, page):
        cold = load(page, reload=False)
        page.wait_for_timeout(3000)  # Chromium writes its code cache after a load
        return {"cold": cold, "warm": load(page, reload=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--variants", default=",".join(v for v in VARIANTS if v != "none"))
    parser.add_argument("--pages", default=",".join(PAGES))
    parser.add_argument(
        "--loader-before", help="A/B of the Pyodide snapshot's loader (variant 'loader')"
    )
    parser.add_argument("--loader-now", help="the loader the server names (default: setup's)")
    args = parser.parse_args()
    if args.loader_now:  # two loaders side by side: the server must name today's
        snapshot.loader_name = lambda folder=None: args.loader_now
    if args.loader_before:
        VARIANTS["loader"] = with_loader(args.loader_before)
    cases = {"official SDK": OFFICIAL}
    for name in args.pages.split(","):
        joiner = "&" if "?" in PAGES[name] else "?"
        # Both through the same rewriting path (the page sent whole, uncompressed, every time).
        cases[f"{name}, now"] = f"{PAGES[name]}{joiner}ab=none"
        for variant in args.variants.split(","):
            cases[f"{name}, before {variant}"] = f"{PAGES[name]}{joiner}ab={variant}"
    results: dict[str, list[dict]] = {case: [] for case in cases}
    loads = [os.getloadavg()[0]]
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        wav = room_noise_wav(tmp / "room.wav")
        zstd_runtime(tmp / "runtime")
        SERVED["app"] = create_app(Settings(data_dir=tmp / "data"))
        app = with_variants(with_official_sdk(SERVED["app"]))
        url = stack.enter_context(serve(app, start_timeout_s=300))
        with sync_playwright() as playwright:
            names = list(cases)
            for n in range(args.runs):
                for case in names[n % len(names) :] + names[: n % len(names)]:
                    run = one_run(playwright, url + cases[case], wav)
                    results[case].append(run)
                    loads.append(os.getloadavg()[0])
                    print(f"  run {n + 1} {case}: " + ", ".join(
                        f"{visit} {k} {v:.0f}" for visit in run for k, v in run[visit].items()
                    ))  # fmt: skip
    rows = []
    for case, runs in results.items():
        cells = [case]
        for visit in ("cold", "warm"):
            for figure in ("ready", "connected"):
                values = [r[visit][figure] for r in runs if figure in r[visit]]
                cells.append(f"{median(values):.0f}" if values else "—")
        rows.append(cells)
    print_table(
        f"page load → ready / connected (ms, median of {args.runs}; "
        f"load average {min(loads):.1f}-{max(loads):.1f})",
        ["page", "cold ready", "cold connected", "warm ready", "warm connected"],
        rows,
    )
    save("start_ab", {"runs": args.runs, "load": loads, "results": results})


if __name__ == "__main__":
    main()
