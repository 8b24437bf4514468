"""Where a page load's time goes, phase by phase: the demo page on Pyodide (`?py=pyodide`) and
on MicroPython, cold (a new, empty profile) and warm (the reload in that profile, as
`./dev bench client` measures it), page load → Python ready (the Connect button enabled).

Read inside the page, without changing it: an init script records PyScript's own progress
events (`py:progress`, `mpy:progress`: "Loading interpreter", "Loaded files", ...), the
WebAssembly compile/instantiate calls, the moment the Pyodide snapshot's loader resolves,
PyScript's `onReady` hook and a `codeBeforeRun` hook (which runs after PyScript wrote and
imported its own Python package, before main.py), where it also imports the client package
and marks the time, so main.py's own run is what is left. The resource timing of every file
says whether it came from the network or the HTTP cache (transfer size 0). (Whether Chromium
reuses Pyodide's compiled wasm on the warm load is tests/browser/test_boot.py's business: it
shows here as a short `instantiateStreaming`.)

The server runs in proxy mode (an API key that is never used): the page only has to start,
not to connect, so no speech models are loaded. Medians over N runs.

`--without-bytecode` adds the Pyodide page served without setup's bytecode for the client
(server/pyc.py), from a second server, interleaved: the A/B of that choice.

    ./dev bench phases [--runs 3] [--pages pyodide,micropython] [--without-bytecode]
"""

import argparse
import contextlib
import tempfile
from pathlib import Path

from common import chromium_launch_args, median, print_table, save, serve
from playwright.sync_api import sync_playwright

from server import pyc, vendor
from server.app import create_app
from server.config import Settings

PAGES = {"pyodide": "/?py=pyodide", "micropython": "/"}
NO_BYTECODE = "pyodide (client from source)"

PROBE = """
(() => {
  const marks = [];
  const mark = (name) => {
    if (!marks.some((m) => m[0] === name)) marks.push([name, performance.now()]);
  };
  globalThis.layercodePhases = marks;
  globalThis.layercodeMark = mark;
  for (const type of ["py", "mpy"])
    addEventListener(`${type}:progress`, (event) => mark(`pyscript: ${event.detail}`));
  for (const name of ["instantiate", "instantiateStreaming", "compile", "compileStreaming"]) {
    const original = WebAssembly[name];
    WebAssembly[name] = function (...args) {
      mark(`wasm ${name} starts`);
      const result = original.apply(this, args);
      result.then(() => mark(`wasm ${name} done`), () => {});
      return result;
    };
  }
  let snapshot;
  Object.defineProperty(globalThis, "layercodePyodideSnapshot", {
    configurable: true, get: () => snapshot,
    set: (value) => { snapshot = value; mark("loadPyodide resolved (snapshot restored)"); },
  });
  // PyScript's hooks, once the page's own module scripts ran (PyScript reads the page's config
  // when its module first runs: importing it any earlier would start it with none).
  const core = new URL("/runtime/pyscript/%(pyscript)s/core.js", location.href).href;
  addEventListener("DOMContentLoaded", () => import(core).then(({ hooks }) => {
    hooks.main.onReady.add(() => mark("PyScript onReady (interpreter, files)"));
    // main.py has top-level awaits: PyScript runs it with the Async hooks.
    const code = [
      "import js",
      "js.layercodeMark('PyScript package written and imported')",
      "import layercode_client, layercode_client.browser",
      "js.layercodeMark('client package imported')",
    ].join("\\n");
    hooks.main.codeBeforeRun.add(code);
    hooks.main.codeBeforeRunAsync.add(code);
  }));
  new MutationObserver(() => {
    if (document.body && document.body.dataset.state === "ready") mark("page ready (main.py ran)");
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-state"] });
})();
"""

NAVIGATION = """
(([n]) => [
  ["page: HTML received", n.responseEnd],
  ["page: parsed (DOM interactive)", n.domInteractive],
  ["page: DOMContentLoaded", n.domContentLoadedEventStart],
  ["page: load", n.loadEventStart],
])(performance.getEntriesByType("navigation"))
"""

RESOURCES = """
performance.getEntriesByType("resource").map((e) => ({
  name: new URL(e.name).pathname, start: e.startTime, end: e.responseEnd,
  transfer: e.transferSize, encoded: e.encodedBodySize, decoded: e.decodedBodySize,
}))
"""


def load(page, reload: bool) -> dict:
    page.reload() if reload else page.goto(page.bench_url)
    try:
        page.wait_for_selector("body[data-state=ready]", state="attached", timeout=120_000)
    except Exception:
        print("  not ready:", page.evaluate("[document.body.dataset.state, layercodePhases]"))
        raise
    return {
        "marks": dict(page.evaluate("layercodePhases") + page.evaluate(NAVIGATION)),
        "resources": page.evaluate(RESOURCES),
    }


def one_run(playwright, url: str, which: str) -> dict:
    profile = tempfile.TemporaryDirectory()
    context = playwright.chromium.launch_persistent_context(profile.name, **chromium_launch_args())
    try:
        page = context.pages[0] if context.pages else context.new_page()
        page.add_init_script(PROBE % {"pyscript": vendor.PYSCRIPT.version})
        page.bench_url = url + PAGES[which]
        cold = load(page, reload=False)
        # Chromium writes compiled wasm to its code cache seconds after a load.
        page.wait_for_timeout(5000)
        return {"cold": cold, "warm": load(page, reload=True)}
    finally:
        context.close()
        profile.cleanup()


def short(path: str) -> str:
    return path.rsplit("/", 1)[-1][:40]


def report(which: str, visit: str, runs: list[dict]) -> dict:
    names: list[str] = []
    for run in runs:
        for name in sorted(run["marks"], key=run["marks"].get):
            if name not in names:
                names.append(name)
    marks = {n: median([r["marks"][n] for r in runs if n in r["marks"]]) for n in names}
    names.sort(key=marks.get)
    rows, previous = [], 0.0
    for name in names:
        rows.append([name, f"{marks[name]:.0f}", f"+{marks[name] - previous:.0f}"])
        previous = marks[name]
    print_table(f"{which} page, {visit}: page load → mark (ms, median of {len(runs)})",
                ["mark", "at", "since previous"], rows)  # fmt: skip
    resources: dict[str, list[dict]] = {}
    for run in runs:
        for entry in run["resources"]:
            resources.setdefault(entry["name"], []).append(entry)
    rrows = []
    for name, entries in sorted(
        resources.items(), key=lambda kv: median([e["start"] for e in kv[1]])
    ):
        rrows.append([
            short(name), f"{median([e['start'] for e in entries]):.0f}",
            f"{median([e['end'] for e in entries]):.0f}",
            f"{median([e['transfer'] for e in entries]) / 1024:.0f}",
            f"{median([e['decoded'] for e in entries]) / 1024:.0f}",
        ])  # fmt: skip
    print_table(f"{which} page, {visit}: files (ms from page load; transfer 0 KB = HTTP cache)",
                ["file", "start", "end", "transfer KB", "size KB"], rrows)  # fmt: skip
    return {"marks": marks, "resources": resources}


def without_bytecode_app():
    """Our app serving the client's wheel without setup's bytecode (server/pyc.py), for A/B."""
    keep = pyc.cache_folder
    pyc.cache_folder = lambda: Path("/nonexistent")  # the wheel is built when the app is made
    try:
        return create_app(Settings(layercode_api_key="lc_never_used"))
    finally:
        pyc.cache_folder = keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pages", default="pyodide,micropython")
    parser.add_argument(
        "--without-bytecode",
        action="store_true",
        help="also the Pyodide page with the client compiled in the page (no setup bytecode)",
    )
    args = parser.parse_args()
    pages = args.pages.split(",")
    if args.without_bytecode:
        pages.append(NO_BYTECODE)
    results: dict[str, list[dict]] = {which: [] for which in pages}
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(serve(create_app(Settings(layercode_api_key="lc_never_used"))))
        urls = {which: url for which in pages}
        if args.without_bytecode:
            urls[NO_BYTECODE] = stack.enter_context(serve(without_bytecode_app()))
        playwright = stack.enter_context(sync_playwright())
        for n in range(args.runs):
            for which in pages[n % len(pages) :] + pages[: n % len(pages)]:
                page = "pyodide" if which == NO_BYTECODE else which
                run = one_run(playwright, urls[which], page)
                results[which].append(run)
                print(f"  run {n + 1} {which}: cold ready "
                      f"{max(run['cold']['marks'].values()):.0f} ms, warm ready "
                      f"{max(run['warm']['marks'].values()):.0f} ms")  # fmt: skip
    summary = {}
    for which, runs in results.items():
        summary[which] = {
            visit: report(which, visit, [r[visit] for r in runs]) for visit in ("cold", "warm")
        }
    save("phases", {"runs": args.runs, "summary": summary})


if __name__ == "__main__":
    main()
