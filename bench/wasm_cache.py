"""Does a real visit leave Pyodide's compiled wasm in Chromium's code cache? Per snapshot loader.

Chromium stores a module's compiled WebAssembly (`Code Cache/wasm` in the profile) only once
about 1 MB of it has been optimised (V8's tier-up of the functions that ran hot). A page that
starts from a Pyodide memory snapshot runs less of Pyodide's wasm at start than one that starts
Python afresh, and the more the snapshot holds, the less: a visitor whose first visit leaves no
compiled code compiles Pyodide's 10 MB again on the next. This measures, for the page started
by each snapshot loader named (server/snapshot.py; the files side by side in Pyodide's folder,
as bench/start_ab.py's `--loader-before` takes them), on a new, empty profile per run:

- `idle`: the page loaded, nothing clicked, left alone;
- `connect`: the page loaded and connected at once (bench/client.py's probe), the microphone
  streaming, as a person using it does;

how much compiled wasm the profile holds 2, 5, 10 and 20 s after the page was ready, and then,
after a reload, the warm load → ready (and → connected) with whatever the cache held.

    ./dev bench wasm_cache --loaders snapshot-sparse-A.mjs,snapshot-sparse-B.mjs [--runs 3]
"""

import argparse
import contextlib
import os
import tempfile
import time
from pathlib import Path

import start_ab
from client import OUR_PROBE, room_noise_wav
from common import chromium_launch_args, median, print_table, save, serve
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from server import snapshot
from server.app import create_app
from server.config import Settings
from tests.support.official_sdk import with_official_sdk

CHECKPOINTS_S = (2, 5, 10, 20)
# Compiled code counted as stored from this size on (the folder holds a small index file from
# the start; Pyodide's compiled code is about 1 MB): as tests/browser/test_boot.py counts it.
STORED_BYTES = 500_000
SCENARIOS = ("idle", "connect")


def cached_wasm_bytes(profile: Path) -> int:
    folder = profile / "Default" / "Code Cache" / "wasm"
    return sum(f.stat().st_size for f in folder.glob("*") if f.is_file()) if folder.is_dir() else 0


def one_run(playwright, url: str, wav: Path, scenario: str) -> dict:
    """One fresh profile: the first visit, the cache watched, then the reload. A visit that
    never gets there (120 s) is recorded as such, with whether the tab crashed, not retried."""
    with tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, **chromium_launch_args(wav=wav)
        )
        crashed = []
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.on("crash", lambda _: crashed.append(True))
            if scenario == "connect":
                page.add_init_script(OUR_PROBE)
            done = "body[data-connected-ms]" if scenario == "connect" else "body[data-state=ready]"
            stored, warm = {}, {}
            try:
                page.goto(url)
                page.wait_for_selector(done, state="attached", timeout=120_000)
                start = time.monotonic()
                for checkpoint in CHECKPOINTS_S:
                    page.wait_for_timeout(max(0, checkpoint - (time.monotonic() - start)) * 1000)
                    stored[checkpoint] = cached_wasm_bytes(Path(profile))
                page.reload()
                page.wait_for_selector(done, state="attached", timeout=120_000)
            except PlaywrightError as error:
                state = None if crashed else page.get_attribute("body", "data-state")
                where = "reload" if stored else "first visit"
                what = "tab crashed" if crashed else f"page state {state}"
                reason = f"{where}: {what} ({error.message.splitlines()[0]})"
                return {"stored": stored, "warm": warm, "failed": reason}
            warm["ready"] = float(page.get_attribute("body", "data-ready-ms"))
            if scenario == "connect":
                warm["connected"] = float(page.get_attribute("body", "data-connected-ms"))
            return {"stored": stored, "warm": warm}
        finally:
            context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loaders", required=True, help="snapshot loaders' file names, A,B")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = parser.parse_args()
    loaders = args.loaders.split(",")
    # The server names the first loader; the others are served by rewriting the page.
    snapshot.loader_name = lambda folder=None: loaders[0]
    cases = {}
    for n, loader in enumerate(loaders):
        variant = "none" if n == 0 else "loader_" + "abcdefghij"[n]  # start_ab: letters only
        if n:
            start_ab.VARIANTS[variant] = start_ab.with_loader(loader)
        for scenario in args.scenarios.split(","):
            cases[(loader, scenario)] = f"/?py=pyodide&ab={variant}"
    results = {case: [] for case in cases}
    loads = [os.getloadavg()[0]]
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        wav = room_noise_wav(tmp / "room.wav")
        start_ab.SERVED["app"] = create_app(Settings(data_dir=tmp / "data"))
        app = start_ab.with_variants(with_official_sdk(start_ab.SERVED["app"]))
        url = stack.enter_context(serve(app, start_timeout_s=300))
        with sync_playwright() as playwright:
            names = list(cases)
            for n in range(args.runs):
                for case in names[n % len(names) :] + names[: n % len(names)]:
                    run = one_run(playwright, url + cases[case], wav, case[1])
                    results[case].append(run)
                    loads.append(os.getloadavg()[0])
                    if "failed" in run:
                        print(f"  run {n + 1} {case[0]} {case[1]}: FAILED {run['failed']}")
                        continue
                    print(f"  run {n + 1} {case[0]} {case[1]}: stored "
                          + ", ".join(f"{s}s {b / 1e6:.1f} MB" for s, b in run["stored"].items())
                          + "; warm " + ", ".join(f"{k} {v:.0f}" for k, v in run["warm"].items()),
                          flush=True)  # fmt: skip
    rows = []
    for (loader, scenario), runs in results.items():
        cells = [loader, scenario]
        for checkpoint in CHECKPOINTS_S:
            stored = sum(1 for r in runs if r["stored"].get(checkpoint, 0) >= STORED_BYTES)
            cells.append(f"{stored}/{len(runs)}")
        cells.append(str(sum(1 for r in runs if "failed" in r)))
        for figure in ("ready", "connected"):
            values = [r["warm"][figure] for r in runs if figure in r["warm"]]
            cells.append(f"{median(values):.0f}" if values else "—")
        rows.append(cells)
    print_table(
        f"compiled wasm stored after the first visit (runs with it), and the warm reload (ms, "
        f"median of {args.runs}; load average {min(loads):.1f}-{max(loads):.1f})",
        [
            "loader",
            "visit",
            *(f"by {s} s" for s in CHECKPOINTS_S),
            "failed",
            "warm ready",
            "warm connected",
        ],
        rows,
    )
    save("wasm_cache", {"runs": args.runs, "load": loads,
                        "results": [{"loader": k[0], "scenario": k[1], "runs": v}
                                    for k, v in results.items()]})  # fmt: skip


if __name__ == "__main__":
    main()
