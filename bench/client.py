"""Our Python client, on both of its interpreters, against the official `@layercode/js-sdk`.

Side by side in the same run, same server, same fake microphone, interleaved so all three see
the same conditions: the demo page on MicroPython (the default), the same page on Pyodide
(`?py=pyodide`), and the official SDK's page. Medians over several runs. Each run launches
Chromium on a new, empty persistent profile (`launch_persistent_context` on a temporary
directory), so:

- cold is a first visit: empty HTTP cache, empty code cache, a browser just started;
- warm is the return visit a person makes: a reload in that same profile, after the cold load
  and about 13 s of streaming, with the HTTP cache and Chromium's on-disk code cache (compiled
  JS and WebAssembly, `Code Cache/js` and `Code Cache/wasm`) as the first visit left them.
  Playwright's throwaway contexts (`browser.new_context()`) are off the record, and Chromium
  keeps a code cache only for disk-backed profiles: a reload there had no compiled code to
  read back, whatever the page's caching did.

The figures:

- page load → `connected`, cold: navigation start to the client reporting `connected` (our
  page shows Connect when Python is ready and the bench clicks it at once, from inside the page
  as the official SDK's page calls `connect()` on load: a click from Playwright, after it saw
  the page ready, came 100-400 ms later on this machine, time neither page spends);
- the same, warm (above);
- click Connect → `connected` (page ready): what a person feels. For the official SDK, from
  its `connect()` call;
- main-thread CPU per second of streamed audio: Chromium's own count of main-thread task time
  (CDP `Performance.getMetrics` → `TaskDuration`) over a window of microphone streaming;
- memory after connect: the page's renderer processes' proportional set size (PSS, from
  /proc: JS heap, WebAssembly memory and the rest), and the JS heap alone.

The official SDK comes from the npm registry (pinned, integrity-checked, by setup) and is
pointed at the local WebSocket (tests/support/official_sdk.py); it offers no sample rate, so it
streams at 8000 Hz while ours streams at 16000 Hz.

Our pages stream the microphone in `chunk_ms` chunks (by default 40 ms on MicroPython, 100 ms
on Pyodide); `--chunk-ms 40,100` adds both pages at those lengths (`?chunk_ms=`) to the same
run.

`--floors` adds, in the same run, each runtime started alone on a bare page (no PyScript, no
client, no connect; bench_app's `/bench-floor.html`): Pyodide from the same memory snapshot and
loader as the Pyodide page, with the same early requests, and MicroPython from its module; the
figure is page load → Python ready, cold and warm. What no page on that runtime can beat: the
goals' budget (the official SDK's page load → connected times 1.5 or 3) against it.

`--reloads N` reloads each profile N more times after the warm load and prints every load's
median: Chromium keeps compiled JavaScript for a script only from its third load (a service
worker's cache would get it on the first), so the later loads show what such a cache could give.

`--idle-warm` adds our two pages reloaded after a first load that never connected (the page
left ready and idle as long as the others stream), in the same rotation: the warm figure above
reloads a connected, streaming page, whose teardown (its socket, audio and, on Pyodide, its
interpreter's heap) shares the cores with the new page's start. The difference is that
teardown's share of the warm figure.

    ./dev bench client [--runs 5] [--window 8] [--chunk-ms 100] [--reloads 3] [--floors]
                       [--idle-warm]
"""

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import numpy as np
from common import chromium_launch_args, median, print_table, save, serve
from playwright.sync_api import sync_playwright
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from server import snapshot, vendor
from server.app import create_app
from server.config import Settings
from server.vendor import MICROPYTHON, OFFICIAL_SDK, PYODIDE
from tests.support.official_sdk import with_official_sdk
from tests.support.speech import write_wav

CLIENTS = {  # name → page
    "MicroPython page": "/",
    "Pyodide page": "/?py=pyodide",
    "official SDK": "/official.html",
}
FLOORS = {  # name → page: a runtime alone (`--floors`), what no page on it can beat
    "Pyodide alone (snapshot)": "/bench-floor.html?py=pyodide",
    "MicroPython alone": "/bench-floor.html",
}
# The bare page: the runtime started as the demo page starts it (Pyodide from the snapshot's
# loader, with the page's early requests; JSPI hidden), and `connected` marked when Python has
# run a line. Its `connect` starts at 0: the click figure means nothing here.
FLOOR_PAGE = """<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<script>
delete WebAssembly.Suspending;
delete WebAssembly.promising;
const pyodide = new URLSearchParams(location.search).get("py") === "pyodide";
const early = (rel, href, as) => document.head.append(Object.assign(
  document.createElement("link"), { rel, href }, as ? { as, crossOrigin: "anonymous" } : {}));
let started;
if (pyodide) {
  for (const file of [%(snapshot)s"python_stdlib.zip", "pyodide-lock.json"])
    early("preload", "%(pyodide)s/" + file, "fetch");
  started = import("%(pyodide)s/%(loader)s").then(({ loadPyodide }) => loadPyodide({}))
    .then((python) => python.runPython("1 + 1"));
} else {
  const wasm = "%(micropython)s/micropython.wasm";
  early("preload", wasm, "fetch");
  started = import("%(micropython)s/micropython.mjs")
    .then(({ loadMicroPython }) => loadMicroPython({ url: wasm }))
    .then((python) => python.runPython("1 + 1"));
}
started.then(() => {
  document.body.dataset.connectStartMs = "0";
  document.body.dataset.connectedMs = String(performance.now());
});
</script></head><body></body></html>
"""
IDLE_FIRST = "#idle-first"  # `--idle-warm`: the page's first load does not connect
OUR_PAGES = ("MicroPython page", "Pyodide page")
IDLE = {  # name → page: our pages, reloaded after a first load that stayed idle
    f"{name}, reloaded idle": CLIENTS[name] + IDLE_FIRST for name in OUR_PAGES
}
# Our page: click Connect the moment the page is ready, record the click and the moment the
# status pill says connected, without changing the page. With IDLE_FIRST in its address, the
# tab's first load is left ready without a click (sessionStorage outlives a reload).
OUR_PROBE = """
const idleFirst = location.hash === "IDLE_FIRST" && !sessionStorage.getItem("benchLoaded");
sessionStorage.setItem("benchLoaded", "1");
new MutationObserver(() => {
  if (document.body.dataset.state === "ready" && !document.body.dataset.clickMs && !idleFirst)
    document.getElementById("connect").click();
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["data-state"]});
document.addEventListener("click", (event) => {
  if (event.target.id === "connect" && !document.body.dataset.clickMs)
    document.body.dataset.clickMs = performance.now();
}, true);
new MutationObserver(() => {
  const pill = document.getElementById("status");
  if (pill && pill.dataset.status === "connected" && !document.body.dataset.connectedMs)
    document.body.dataset.connectedMs = performance.now();
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["data-status"]});
""".replace("IDLE_FIRST", IDLE_FIRST)


def with_chunk_lengths(chunk_lengths: list[int]) -> dict[str, str]:
    """CLIENTS, plus our two pages at each of these chunk lengths (`?chunk_ms=`)."""
    clients = dict(CLIENTS)
    for chunk_ms in chunk_lengths:
        clients[f"MicroPython page, {chunk_ms} ms chunks"] = f"/?chunk_ms={chunk_ms}"
        clients[f"Pyodide page, {chunk_ms} ms chunks"] = f"/?py=pyodide&chunk_ms={chunk_ms}"
    return clients


def bench_app(settings: Settings) -> Starlette:
    """Our app, plus a page that runs the official SDK and the runtimes' bare page, on one
    origin."""
    app = with_official_sdk(create_app(settings))
    loader = snapshot.loader_name()  # None: no snapshot, Pyodide starts plain
    page = FLOOR_PAGE % {
        "pyodide": vendor.pyodide_url(),
        "loader": loader or "pyodide.mjs",
        "snapshot": f'"{loader.removesuffix(".mjs")}.bin", ' if loader else "",
        "micropython": vendor.micropython_url(),
    }

    async def floor(request):
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    app.router.routes.insert(0, Route("/bench-floor.html", floor))
    return app


def room_noise_wav(path: Path, seconds: float = 30) -> Path:
    rng = np.random.default_rng(3)
    write_wav(path, rng.normal(0, 40, int(seconds * 48000)).astype("<i2").tobytes(), 48000)
    return path


def metric(cdp, name: str) -> float:
    metrics = cdp.send("Performance.getMetrics")["metrics"]
    return next(m["value"] for m in metrics if m["name"] == name)


def renderer_pss_mb(browser) -> float:
    """PSS of this browser's renderer processes (the page's JS, wasm and DOM live there)."""
    session = browser.new_browser_cdp_session()
    processes = session.send("SystemInfo.getProcessInfo")["processInfo"]
    total_kb = 0
    for process in processes:
        if process["type"] != "renderer":
            continue
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{process['id']}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
    session.detach()
    return total_kb / 1024


def load_and_connect(page, reload: bool = False) -> dict:
    """Load (or reload) the page, which connects by itself; the page's own timings, in ms."""
    if reload:
        page.reload()
    else:
        page.goto(page.bench_url)
    page.wait_for_selector("body[data-connected-ms]", state="attached", timeout=120_000)
    connected = float(page.get_attribute("body", "data-connected-ms"))
    started = page.get_attribute("body", "data-click-ms") or page.get_attribute(
        "body", "data-connect-start-ms"
    )
    return {"connected_ms": connected, "click_to_connected_ms": connected - float(started)}


@contextlib.contextmanager
def fresh_profile(playwright, url: str, wav: Path):
    """A browser on a persistent profile, empty at first, and its page probed for `url`: a
    throwaway context (`browser.new_context()`) is off the record, and Chromium keeps no code
    cache for those, so its reload recompiled Pyodide's wasm every time."""
    profile = tempfile.TemporaryDirectory()
    context = playwright.chromium.launch_persistent_context(
        profile.name, **chromium_launch_args(wav=wav)
    )
    try:
        page = context.pages[0] if context.pages else context.new_page()
        page.add_init_script(OUR_PROBE)
        page.bench_url = url
        yield context, page
    finally:
        context.close()
        profile.cleanup()


def one_run(
    playwright, url: str, wav: Path, which: str, path: str, window: float, reloads: int = 0
) -> dict:
    with fresh_profile(playwright, url + path, wav) as (context, page):
        if which in IDLE or which in FLOORS:  # no audio: two loads, as far apart as the pages'
            if which in IDLE:  # left ready, never connected
                page.goto(page.bench_url)
                page.wait_for_selector("body[data-state=ready]", state="attached", timeout=120_000)
                cold = {}
            else:
                cold = {"cold_connected_ms": load_and_connect(page)["connected_ms"]}
            page.wait_for_timeout(5000 + window * 1000)
            warm = load_and_connect(page, reload=True)
            return {**cold, "warm_connected_ms": warm["connected_ms"]}
        cold = load_and_connect(page)
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        page.wait_for_timeout(5000)  # the welcome plays out; then only the microphone streams
        before, start = metric(cdp, "TaskDuration"), time.monotonic()
        page.wait_for_timeout(window * 1000)
        cpu = (metric(cdp, "TaskDuration") - before) / (time.monotonic() - start)
        memory = renderer_pss_mb(context.browser)
        js_heap = metric(cdp, "JSHeapUsedSize") / 2**20
        warm = load_and_connect(page, reload=True)
        later = []  # --reloads: the third load on, once Chromium keeps compiled JavaScript
        for _ in range(reloads):
            page.wait_for_timeout(1500)  # the page connected; let it settle before leaving
            later.append(load_and_connect(page, reload=True)["connected_ms"])
        return {
            "cold_connected_ms": cold["connected_ms"],
            "warm_connected_ms": warm["connected_ms"],
            "click_to_connected_ms": cold["click_to_connected_ms"],
            "cpu_ms_per_s": cpu * 1000,
            "renderer_pss_mb": memory,
            "js_heap_mb": js_heap,
            **{f"load_{n + 3}_connected_ms": ms for n, ms in enumerate(later)},
        }


FIGURES = (
    ("cold_connected_ms", "page load → connected, cold (ms)"),
    ("warm_connected_ms", "page load → connected, warm (ms)"),
    ("click_to_connected_ms", "click Connect → connected (ms)"),
    ("cpu_ms_per_s", "main-thread CPU per s of audio (ms)"),
    ("renderer_pss_mb", "renderer memory after connect (PSS, MB)"),
    ("js_heap_mb", "JS heap after connect (MB)"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--window", type=float, default=8.0)
    parser.add_argument(
        "--chunk-ms", default="", help="also our pages with these chunk lengths, comma-separated"
    )
    parser.add_argument(
        "--floors",
        action="store_true",
        help="also each runtime started alone on a bare page (no PyScript, no client)",
    )
    parser.add_argument(
        "--reloads", type=int, default=0,
        help="this many more reloads after the warm one, each timed (what a cache that fills "
        "only from the third load, such as Chromium's for compiled JavaScript, gives)",
    )  # fmt: skip
    parser.add_argument(
        "--idle-warm", action="store_true",
        help="also our pages reloaded after a first load that did not connect (the warm "
        "figure without the teardown of a live session)",
    )  # fmt: skip
    args = parser.parse_args()
    clients = with_chunk_lengths([int(c) for c in args.chunk_ms.split(",") if c])
    if args.floors:
        clients.update(FLOORS)
    if args.idle_warm:
        clients.update(IDLE)

    results: dict[str, list[dict]] = {which: [] for which in clients}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        wav = room_noise_wav(tmp / "room.wav")
        app = bench_app(Settings(data_dir=tmp / "data"))
        # The embedded pipeline loads its speech models at start: over 30 s on a loaded machine.
        url = stack.enter_context(serve(app, start_timeout_s=300))
        with sync_playwright() as playwright:
            for n in range(args.runs):
                # Interleaved, and in a rotating order: all see the same conditions, and none is
                # always first in a round (A/B runs of two variants of our page on the loaded
                # machine: swapping their order moved about 90 ms of cold time to the first).
                order = list(clients)[n % len(clients) :] + list(clients)[: n % len(clients)]
                for which in order:
                    run = one_run(
                        playwright, url, wav, which, clients[which], args.window, args.reloads
                    )
                    results[which].append(run)
                    print(f"  run {n + 1} {which:16s}: "
                          + ", ".join(f"{k} {v:.1f}" for k, v in run.items()))  # fmt: skip

    medians = {
        which: {name: median([r[name] for r in runs if name in r]) for name, _ in FIGURES}
        for which, runs in results.items()
    }
    rows = []
    for name, label in FIGURES:
        mpy, pyodide, theirs = (medians[w][name] for w in CLIENTS)
        rows.append([label, f"{mpy:.1f}", f"{pyodide:.1f}", f"{theirs:.1f}",
                     f"{mpy / theirs:.2f}×", f"{pyodide / theirs:.2f}×"])  # fmt: skip
    print_table(
        f"Python client (MicroPython {MICROPYTHON.version}, Pyodide {PYODIDE.version}) vs "
        f"@layercode/js-sdk {OFFICIAL_SDK.version}, median of {args.runs}",
        ["figure", "MicroPython", "Pyodide", "official", "mpy/official", "pyodide/official"],
        rows,
    )
    if args.reloads:
        loads = [f"load_{n + 3}_connected_ms" for n in range(args.reloads)]
        print_table(
            "Page load → connected on each load in one profile, median (ms)",
            ["page", "1 (cold)", "2 (warm)", *[str(n + 3) for n in range(args.reloads)]],
            [[w, *(f"{median([r[k] for r in results[w]]):.0f}"
                   for k in ("cold_connected_ms", "warm_connected_ms", *loads))]
             for w in clients],
        )  # fmt: skip
    if args.floors:
        official = medians["official SDK"]
        print_table(
            "Each runtime alone on a bare page: page load → Python ready, median (ms), against "
            "the official SDK's page load → connected",
            ["runtime", "cold", "warm", "cold /official", "warm /official"],
            [[w, f"{medians[w]['cold_connected_ms']:.0f}", f"{medians[w]['warm_connected_ms']:.0f}",
              *(f"{medians[w][k] / official[k]:.2f}×"
                for k in ("cold_connected_ms", "warm_connected_ms"))]
             for w in FLOORS],
        )  # fmt: skip
    if args.idle_warm:
        official = medians["official SDK"]["warm_connected_ms"]
        print_table(
            "Warm load → connected: the reload of a live session against that of a page that "
            "only loaded, median (ms)",
            ["page", "after a session", "after an idle load", "difference", "idle /official"],
            [[page, f"{medians[page]['warm_connected_ms']:.0f}",
              f"{medians[idle]['warm_connected_ms']:.0f}",
              f"{medians[page]['warm_connected_ms'] - medians[idle]['warm_connected_ms']:+.0f}",
              f"{medians[idle]['warm_connected_ms'] / official:.2f}×"]
             for page, idle in zip(OUR_PAGES, IDLE, strict=True)],
        )  # fmt: skip
    extra = [w for w in clients if w not in CLIENTS and w not in FLOORS and w not in IDLE]
    if extra:  # the pages at other chunk lengths, against the official SDK
        print_table(
            "Our pages at other chunk lengths (`?chunk_ms=`), main-thread CPU, median",
            ["page", "CPU ms per s of audio", "/official"],
            [[w, f"{medians[w]['cpu_ms_per_s']:.1f}",
              f"{medians[w]['cpu_ms_per_s'] / medians['official SDK']['cpu_ms_per_s']:.2f}×"]
             for w in [*OUR_PAGES, *extra]],
        )  # fmt: skip
    save("client", {"runs": args.runs, "medians": medians, "detail": results})


if __name__ == "__main__":
    main()
