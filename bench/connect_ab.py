"""A/B of a change to the client's connect: click Connect → `connected`, many times per page.

bench/start_ab.py measures a whole page load, one connect per load; on this shared machine a
load's spread (hundreds of ms) hides a change of 10-20 ms in the connect alone. Here each
variant's page (VARIANTS of bench/start_ab.py, `?ab=<name>`) gets its own fresh profile, is
loaded once (cold, not counted), then `--cycles` times reloaded (warm) and connected from
inside the page the moment it is ready: the page's first connect, which makes the page's first
AudioContexts (Chromium opens the audio output then) and loads their worklets, as a visitor's
does. The variants' pages alternate, so all see the same load. `--no-reload` connects,
disconnects and connects again in one page instead (a later connect: the audio output is open
already, which hides what a first connect waits for). Medians, spread and load average.

    ./dev bench connect_ab [--variants late_recorder] [--pages micropython] [--cycles 20]
                           [--no-reload]
"""

import argparse
import contextlib
import os
import tempfile
from pathlib import Path

import start_ab
from client import room_noise_wav
from common import chromium_launch_args, median, p95, print_table, save, serve
from playwright.sync_api import sync_playwright

from server.app import create_app
from server.config import Settings
from tests.support.official_sdk import with_official_sdk

# One connect from inside the page: click, wait for the status pill to say connected; then
# disconnect and wait for it to say so. Returns the click → connected time in ms.
CYCLE = """
async () => {
  const pill = document.getElementById("status");
  const until = (status) => new Promise((resolve) => {
    if (pill.dataset.status === status) return resolve();
    const watch = new MutationObserver(() => {
      if (pill.dataset.status === status) { watch.disconnect(); resolve(); }
    });
    watch.observe(pill, { attributes: true, attributeFilter: ["data-status"] });
  });
  const button = document.getElementById("connect");
  const start = performance.now();
  button.click();
  await Promise.race([until("connected"), until("error")]);
  const banner = document.getElementById("error");
  if (pill.dataset.status === "error") throw new Error(banner.textContent);
  const took = performance.now() - start;
  button.click();
  await until("disconnected");
  return took;
}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="late_recorder")
    parser.add_argument("--pages", default="micropython")
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--no-reload", action="store_true", help="later connects, one page")
    args = parser.parse_args()
    cases = {}
    for name in args.pages.split(","):
        joiner = "&" if "?" in start_ab.PAGES[name] else "?"
        cases[f"{name}, now"] = f"{start_ab.PAGES[name]}{joiner}ab=none"
        for variant in args.variants.split(","):
            cases[f"{name}, before {variant}"] = f"{start_ab.PAGES[name]}{joiner}ab={variant}"
    results: dict[str, list[float]] = {case: [] for case in cases}
    loads = [os.getloadavg()[0]]
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        wav = room_noise_wav(tmp / "room.wav")
        # Every connect authorizes: more than the default 60 a minute from one address.
        settings = Settings(data_dir=tmp / "data", authorize_rate_limit=10_000)
        start_ab.SERVED["app"] = create_app(settings)
        app = start_ab.with_variants(with_official_sdk(start_ab.SERVED["app"]))
        url = stack.enter_context(serve(app, start_timeout_s=300))
        with sync_playwright() as playwright, contextlib.ExitStack() as browsers:
            pages = {}
            for case, path in cases.items():
                profile = stack.enter_context(tempfile.TemporaryDirectory())
                context = playwright.chromium.launch_persistent_context(
                    profile, **chromium_launch_args(wav=wav)
                )
                browsers.callback(context.close)
                page = context.pages[0] if context.pages else context.new_page()
                page.goto(url + path)
                page.wait_for_selector("body[data-state=ready]", state="attached", timeout=120_000)
                page.evaluate(CYCLE)  # the first connect (worklets fetched): not counted
                pages[case] = page
            names = list(cases)
            for n in range(args.cycles):
                for case in names[n % len(names) :] + names[: n % len(names)]:
                    page = pages[case]
                    if not args.no_reload:
                        page.reload()
                        ready = "body[data-state=ready]"
                        page.wait_for_selector(ready, state="attached", timeout=120_000)
                    page.wait_for_timeout(300)  # idle a moment: the connect's own time only
                    results[case].append(page.evaluate(CYCLE))
                loads.append(os.getloadavg()[0])
                print(f"  cycle {n + 1}: " + ", ".join(
                    f"{case} {results[case][-1]:.0f}" for case in names), flush=True)  # fmt: skip
    rows = [
        [case, f"{median(v):.1f}", f"{p95(v):.1f}", f"{min(v):.1f}", f"{max(v):.1f}"]
        for case, v in results.items()
    ]
    print_table(
        f"click Connect → connected (ms, {args.cycles} connects each, alternated; load average "
        f"{min(loads):.1f}-{max(loads):.1f})",
        ["page", "median", "p95", "min", "max"],
        rows,
    )
    save("connect_ab", {"cycles": args.cycles, "load": loads, "results": results})


if __name__ == "__main__":
    main()
