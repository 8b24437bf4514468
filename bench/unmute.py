"""Unmute delay: from `unmute()` to the first microphone audio on the wire, received by the server.

Side by side in the same run, same scripted pipeline (tests/support/scripted_pipeline.py: it
stamps every client message as it arrives), same fake microphone: our client on MicroPython and
on Pyodide, and the official `@layercode/js-sdk` (pinned, vendored by setup). Each client gets a
fresh Chromium, connects, then is muted and unmuted `--toggles` times; while muted nothing is
sent (both clients drop their chunks), so the first `client.audio` that arrives after the page
called `unmute()` is the resumed stream. Delay = its arrival (server clock) - the moment the
page called `unmute()` (page clock: `performance.timeOrigin + performance.now()`, the same
machine's wall clock). Both clients send ~100 ms chunks (ours `chunk_ms` 100 at 16 kHz, the
SDK 1638 bytes at 8 kHz), so a client that just waits for the chunk being filled shows about
50 ms at p50 and 100 at p95; ours tells its recorder worklet to send that chunk after 20 ms
of live audio (recorder.js). Goal (issue: unmute resumes at once): p95 ≤ 100 ms.
`--chunk-ms` sets our client's chunk length (the SDK's is fixed).

    ./dev bench unmute [--toggles 20] [--muted-ms 300] [--chunk-ms 100]
"""

import argparse
import contextlib
import json
import os
import random
import tempfile
import time
from pathlib import Path

from common import chromium_launch_args, median, p95, print_table, save, serve
from playwright.sync_api import sync_playwright
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from server.vendor import (
    MICROPYTHON,
    OFFICIAL_SDK,
    PYODIDE,
    micropython_url,
    pyodide_url,
    pyscript_url,
)
from server.wheel import wheel_filename
from tests.support.scripted_pipeline import ScriptedPipeline
from tests.support.speech import write_wav

OUR_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<script>delete WebAssembly.Suspending; delete WebAssembly.promising;</script>
<script type="module" src="{pyscript}/core.js"></script></head>
<body><script type="{script_type}" config='{config}'>
import js
from pyscript import ffi
from layercode_client import LayercodeClient

def status(value):
    js.document.body.dataset.status = value

client = LayercodeClient({{"agentId": "ag_bench", "authorizeSessionEndpoint": "/api/authorize",
                          "onStatusChange": status, "chunk_ms": {chunk_ms}}})
js.window.mute = ffi.create_proxy(lambda: client.mute())
js.window.unmute = ffi.create_proxy(lambda: client.unmute())
client.connect()
</script></body></html>
"""

# The official SDK, pointed at the scripted pipeline's socket (it always dials Layercode's cloud).
OFFICIAL_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<script src="/official/layercode-js-sdk.min.js"></script></head>
<body><script>
  const client = new LayercodeClient.default({
    agentId: "ag_bench",
    authorizeSessionEndpoint: "/api/authorize",
    onStatusChange: (status) => { document.body.dataset.status = status; },
  });
  client._websocketUrl = `ws://${location.host}/ws`;
  window.mute = () => client.mute();
  window.unmute = () => client.unmute();
  client.connect();
</script></body></html>
"""

CLIENTS = ("MicroPython", "Pyodide", "official SDK")

# Take the time, then unmute, in one task: what the page's own code would do.
UNMUTE = "() => { const at = performance.timeOrigin + performance.now(); unmute(); return at; }"


def page_html(which: str, chunk_ms: int) -> str:
    if which == "official SDK":
        return OFFICIAL_PAGE
    micropython = which == "MicroPython"
    engine = (
        f"{micropython_url()}/micropython.mjs" if micropython else f"{pyodide_url()}/pyodide.mjs"
    )
    config = json.dumps({"interpreter": engine, "files": {f"/client/{wheel_filename()}": "./*"}})
    return OUR_PAGE.format(
        pyscript=pyscript_url(),
        config=config,
        script_type="mpy" if micropython else "py",
        chunk_ms=chunk_ms,
    )


def noise_wav(path: Path, seconds: float = 30) -> Path:
    import numpy as np

    rng = np.random.default_rng(5)
    write_wav(path, rng.normal(0, 300, int(seconds * 48000)).astype("<i2").tobytes(), 48000)
    return path


def wait(page, condition, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the page did not get there in time")
        page.wait_for_timeout(5)


def one_client(playwright, pipeline, url, wav, which, args) -> list[float]:
    """The unmute delays (ms) of one client, in a fresh browser."""
    toggles, muted_ms = args.toggles, args.muted_ms
    pipeline.pages["unmute.html"] = page_html(which, args.chunk_ms)
    browser = playwright.chromium.launch(**chromium_launch_args(wav=wav))
    try:
        page = browser.new_context().new_page()
        first = len(pipeline.received)
        page.goto(url + "/test-pages/unmute.html")
        page.wait_for_selector("body[data-status=connected]", state="attached", timeout=120_000)
        audio = lambda: [r for r in pipeline.received[first:] if r.type == "client.audio"]  # noqa: E731
        wait(page, lambda: len(audio()) >= 5)  # streaming
        wall_minus_monotonic = time.time() - time.monotonic()
        delays = []
        jitter = random.Random(7)
        for _ in range(toggles):
            page.evaluate("mute()")
            # (A chunk sent before mute() has arrived by then. The jitter spreads unmute() over
            # the chunk's 100 ms: where in it unmute() falls decides most of the delay.)
            page.wait_for_timeout(muted_ms + jitter.uniform(0, 100))
            before = len(audio())
            unmuted_at = page.evaluate(UNMUTE) / 1000  # wall-clock seconds
            wait(page, lambda b=before: len(audio()) > b)
            arrived = audio()[before].at + wall_minus_monotonic
            delays.append((arrived - unmuted_at) * 1000)
            page.wait_for_timeout(150)  # a few chunks flow before the next mute
        return delays
    finally:
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toggles", type=int, default=20)
    parser.add_argument("--muted-ms", type=int, default=300)
    parser.add_argument("--chunk-ms", type=int, default=100, help="our client's chunk_ms")
    args = parser.parse_args()

    load_before = os.getloadavg()
    results: dict[str, list[float]] = {}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        wav = noise_wav(tmp / "noise.wav")
        pipeline = ScriptedPipeline()
        app = pipeline.app()
        official = Mount("/official", StaticFiles(directory=OFFICIAL_SDK.target))
        app.router.routes.insert(0, official)
        url = stack.enter_context(serve(app))
        with sync_playwright() as playwright:
            for which in CLIENTS:
                delays = one_client(playwright, pipeline, url, wav, which, args)
                results[which] = delays
                print(f"  {which:13s}: " + " ".join(f"{d:.0f}" for d in delays))
    load_after = os.getloadavg()

    rows = [
        [which, f"{median(d):.0f}", f"{p95(d):.0f}", f"{min(d):.0f}", f"{max(d):.0f}", len(d)]
        for which, d in results.items()
    ]
    print_table(
        f"unmute() → first client.audio at the server (ms; our chunk_ms {args.chunk_ms}), "
        f"MicroPython {MICROPYTHON.version}, Pyodide {PYODIDE.version}, "
        f"@layercode/js-sdk {OFFICIAL_SDK.version}; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after",
        ["client", "p50", "p95", "min", "max", "toggles"],
        rows,
    )
    save(
        "unmute",
        {
            "toggles": args.toggles,
            "muted_ms": args.muted_ms,
            "chunk_ms": args.chunk_ms,
            "load_average": {"before": load_before, "after": load_after},
            "p50_ms": {w: median(d) for w, d in results.items()},
            "p95_ms": {w: p95(d) for w, d in results.items()},
            "delays_ms": results,
        },
    )


if __name__ == "__main__":
    main()
