"""Our Python client against the official `@layercode/js-sdk`, side by side, same server, same run.

Two figures per client, medians over several runs, each in a fresh browser profile:

- page load → `connected`: navigation start to the client reporting `connected` (our page
  connects as soon as Python is ready; the official SDK's page connects on load);
- main-thread CPU per second of streamed audio: Chromium's own count of main-thread task time
  (CDP `Performance.getMetrics` → `TaskDuration`) over a window of microphone streaming,
  divided by the window's length.

Both talk to the same local server, the embedded pipeline, with the same fake microphone (quiet
room noise, so no turn starts and the window measures streaming alone). The official SDK comes
from the npm registry (pinned, integrity-checked, by setup) and is pointed at the local
WebSocket (tests/support/official_sdk.py); it
offers no sample rate, so it streams at 8000 Hz while ours streams at 16000 Hz.

    python bench/client.py [--runs 5] [--window 8]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import numpy as np
from common import chromium_launch_args, median, print_table, save, serve
from playwright.sync_api import sync_playwright
from starlette.applications import Starlette

from server.app import create_app
from server.config import Settings
from server.vendor import OFFICIAL_SDK
from tests.support.official_sdk import with_official_sdk
from tests.support.speech import write_wav

# Our page: record the moment the status pill says connected, without changing the page.
OUR_CONNECTED_PROBE = """
new MutationObserver(() => {
  const pill = document.getElementById("status");
  if (pill && pill.dataset.status === "connected" && !document.body.dataset.connectedMs)
    document.body.dataset.connectedMs = performance.now();
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["data-status"]});
"""


def bench_app(settings: Settings) -> Starlette:
    """Our app, plus a page that runs the official SDK, on one origin."""
    return with_official_sdk(create_app(settings))


def room_noise_wav(path: Path, seconds: float = 30) -> Path:
    rng = np.random.default_rng(3)
    write_wav(path, rng.normal(0, 40, int(seconds * 48000)).astype("<i2").tobytes(), 48000)
    return path


def task_seconds(cdp) -> float:
    metrics = cdp.send("Performance.getMetrics")["metrics"]
    return next(m["value"] for m in metrics if m["name"] == "TaskDuration")


def one_run(playwright, url: str, wav: Path, which: str, window: float) -> dict:
    browser = playwright.chromium.launch(**chromium_launch_args(wav=wav))
    try:
        context = browser.new_context()
        page = context.new_page()
        if which == "ours":
            page.add_init_script(OUR_CONNECTED_PROBE)
            page.goto(f"{url}/")
            page.wait_for_selector("body[data-state=ready]", state="attached", timeout=60_000)
            page.click("#connect")
        else:
            page.goto(f"{url}/official.html")
        page.wait_for_selector("body[data-connected-ms]", state="attached", timeout=60_000)
        connected_ms = float(page.get_attribute("body", "data-connected-ms"))
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        page.wait_for_timeout(5000)  # the welcome plays out; then only the microphone streams
        before, start = task_seconds(cdp), time.monotonic()
        page.wait_for_timeout(window * 1000)
        cpu = (task_seconds(cdp) - before) / (time.monotonic() - start)
        return {"connected_ms": connected_ms, "cpu_ms_per_s": cpu * 1000}
    finally:
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--window", type=float, default=8.0)
    args = parser.parse_args()

    results: dict[str, list[dict]] = {"ours": [], "official": []}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        wav = room_noise_wav(tmp / "room.wav")
        app = bench_app(Settings(data_dir=tmp / "data"))
        url = stack.enter_context(serve(app))
        with sync_playwright() as playwright:
            for n in range(args.runs):
                for which in ("ours", "official"):  # interleaved: both see the same conditions
                    run = one_run(playwright, url, wav, which, args.window)
                    results[which].append(run)
                    print(f"  run {n + 1} {which:8s}: connected at {run['connected_ms']:6.0f} ms,"
                          f" main thread {run['cpu_ms_per_s']:5.1f} ms/s")  # fmt: skip

    figures = {
        which: {
            "connected_ms": median([r["connected_ms"] for r in runs]),
            "cpu_ms_per_s": median([r["cpu_ms_per_s"] for r in runs]),
        }
        for which, runs in results.items()
    }
    rows = []
    for name, label in (
        ("connected_ms", "page load → connected (ms)"),
        ("cpu_ms_per_s", "main-thread CPU per s of audio (ms)"),
    ):
        ours, theirs = figures["ours"][name], figures["official"][name]
        rows.append([label, ours, theirs, f"{ours / theirs:.2f}"])
    print_table(
        f"Python client vs @layercode/js-sdk {OFFICIAL_SDK.version} (median of {args.runs})",
        ["figure", "ours", "official", "ours/official"],
        rows,
    )
    save("client", {"runs": args.runs, "medians": figures, "detail": results})


if __name__ == "__main__":
    main()
