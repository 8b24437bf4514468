"""The page boots Python from our own server, offline, showing progress until it is ready."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import tomllib
from pathlib import Path

import pytest

from server import pyc, snapshot, vendor
from server.static import ROOT
from server.vendor import pyodide_url
from server.wheel import SOURCE_DIR, _source_files
from tests.browser.conftest import RequestLog, running_app, slow_wasm, wait_ready
from tests.conftest import chromium_launch_args

pytestmark = pytest.mark.browser


def test_page_boots_offline_shows_progress_then_ready(page, artifacts, tmp_path):
    requests = RequestLog(page)
    console_errors = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    with running_app(wrap=slow_wasm, data_dir=tmp_path) as url:
        page.goto(url, wait_until="domcontentloaded")
        # Progress is on screen from the first paint, moving, before any Python runs.
        assert page.get_attribute("body", "data-state") == "loading"
        assert page.is_visible("#loader")
        assert "Starting Python" in page.inner_text("#loader-text")
        # The runtime's download is held back 1.5 s (as on a slow network), so the bar must
        # be seen moving while the page waits: two frames 100 ms apart differ.
        started = page.evaluate("document.getAnimations()[0].startTime")
        assert started is not None and started < 1000, "the bar did not start at first paint"
        box = page.locator(".bar").bounding_box()
        first = page.screenshot(clip=box, animations="allow")
        page.wait_for_timeout(100)
        second = page.screenshot(clip=box, animations="allow")
        assert page.get_attribute("body", "data-state") == "loading"
        assert first != second, "the progress bar did not move within 100 ms"
        page.screenshot(path=artifacts / "boot-progress.png")
        first_paint = page.evaluate(
            "performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null"
        )
        assert first_paint is not None and first_paint < 2000

        wait_ready(page)
        assert page.is_hidden("#loader")
        assert page.inner_text("#status") == "Ready"
        assert page.get_attribute("#status", "data-status") == "disconnected"
        page.screenshot(path=artifacts / "boot-ready.png")

        # Python in the page authorizes and connects to the embedded pipeline.
        page.click("#connect")
        page.wait_for_selector("#status[data-status=connected]", timeout=20_000)
        assert "connected (sess_" in page.inner_text("#log")

    assert requests.outside() == [], "the page asked for something off this machine"
    assert any(u.endswith("micropython.wasm") for u in requests.urls)  # the default
    assert not any(u.endswith("pyodide.asm.wasm") for u in requests.urls)
    assert console_errors == [], "\n".join(console_errors)


def test_authorize_error_is_shown_in_words(page, cloud, cloud_settings):
    cloud.mode = "4xx"  # Layercode refuses the session: its reason reaches the page
    with running_app(**cloud_settings) as url:
        page.goto(url)
        wait_ready(page)
        page.click("#connect")
        page.wait_for_selector("#error:not([hidden])", timeout=10_000)
        assert "invalid pipeline id" in page.inner_text("#error")
        assert "lc_browser_test_key" not in page.inner_text("#error")
        assert page.get_attribute("#status", "data-status") == "error"


@pytest.mark.parametrize(
    "query, missing",
    [("", "micropython.mjs"), ("?py=pyodide", "snapshot-sparse-*.bin")],
    ids=["micropython-runtime", "pyodide-snapshot"],
)
def test_a_runtime_that_fails_to_load_is_shown_in_words(page, query, missing):
    """PyScript 0.7.31 shows a runtime that failed to load nowhere: the page said "Loading"
    for ever. Now the banner says Python could not start, and why."""
    page.route(f"**/{missing}", lambda route: route.fulfill(status=404, body="gone"))
    with running_app(layercode_api_key="lc_never_used") as url:
        page.goto(url + "/" + query)
        page.wait_for_selector("#error:not([hidden])", timeout=60_000)
        assert "Python could not start" in page.inner_text("#error")
        assert page.get_attribute("#status", "data-status") == "error"
        assert page.get_attribute("body", "data-state") == "error"


@pytest.mark.parametrize("query", ["", "?py=pyodide"])
def test_a_reload_asks_the_server_for_the_page_alone(page, query):
    """Every file the page names is cached as immutable under a content-hashed URL, and its
    config is in the page: a reload (until Python is ready) asks for index.html and nothing
    else, not even a revalidation."""
    asked: list[str] = []

    def record(app):
        async def recorded(scope, receive, send):
            if scope["type"] == "http":
                asked.append(scope["path"])
            await app(scope, receive, send)

        return recorded

    # The cloud proxy's settings: nothing here connects, and the embedded pipeline's speech
    # models need not load.
    with running_app(wrap=record, layercode_api_key="lc_never_used") as url:
        with page.expect_request_finished(lambda r: "icon.svg" in r.url):  # fetched on its own time
            page.goto(url + "/" + query)
            wait_ready(page)
        assert "/main.py" not in asked and any(p.startswith("/v/") for p in asked)
        asked.clear()
        page.reload()
        wait_ready(page)
        assert asked == ["/"]


@pytest.mark.parametrize("query", ["", "?py=pyodide"])
def test_the_page_loads_none_of_the_plugins_its_config_leaves_out(page, query):
    """PyScript's core sets up both interpreters, and for the one a page does not use it has
    no config, so it imported every optional plugin (five modules fetched and run before the
    interpreter starts, their hooks run on the page's interpreter too): the page gives that
    interpreter a config leaving out the same plugins. The error plugin stays, preloaded."""
    left_out = [
        name.removeprefix("!")
        for name in tomllib.loads((ROOT / "pyscript.toml").read_text())["plugins"]
        if name.startswith("!")
    ]
    assert left_out and "error" not in left_out
    with running_app(layercode_api_key="lc_never_used") as url:
        requests = RequestLog(page)
        page.goto(url + "/" + query)
        wait_ready(page)
    files = [u.rsplit("/", 1)[-1] for u in requests.urls if "/runtime/pyscript/" in u]
    loaded = [f for f in files if any(f.startswith(name + "-") for name in left_out)]
    assert loaded == [], f"the page loaded plugins its config leaves out: {loaded}"
    assert any(f.startswith("error-") for f in files)


def cached_wasm_bytes(profile: Path) -> int:
    """How much compiled WebAssembly Chromium has stored in this profile's code cache."""
    folder = profile / "Default" / "Code Cache" / "wasm"
    return sum(f.stat().st_size for f in folder.glob("*") if f.is_file()) if folder.is_dir() else 0


def traced_event_names(cdp, categories: str, action) -> set[str]:
    """The names of the trace events (of `categories`) Chromium records while `action` runs."""
    done: list[dict] = []
    cdp.on("Tracing.tracingComplete", lambda event: done.append(event))
    cdp.send("Tracing.start", {"categories": categories, "transferMode": "ReturnAsStream"})
    action()
    cdp.send("Tracing.end")
    while not done:
        # Lets the completion event arrive, without spinning.
        cdp.send("Runtime.evaluate", {"expression": "new Promise(r => setTimeout(r, 50))",
                                      "awaitPromise": True})  # fmt: skip
    chunks = []
    while True:
        read = cdp.send("IO.read", {"handle": done[0]["stream"]})
        chunks.append(base64.b64decode(read["data"]) if read.get("base64Encoded") else read["data"])
        if read["eof"]:
            break
    text = "".join(c.decode() if isinstance(c, bytes) else c for c in chunks)
    return {event.get("name") for event in json.loads(text)["traceEvents"]}


def test_a_warm_pyodide_load_reuses_the_compiled_wasm(playwright, tmp_path):
    """Chromium keeps Pyodide's compiled wasm in the profile's code cache, and a return visit
    takes it back instead of compiling 10 MB of wasm again. (Preloaded with
    `<link rel=preload>`, the wasm's code was written to the cache on every visit and never
    read back: Chromium offers cached code only to a `fetch()` of the file.)"""
    profile = tmp_path / "profile"
    context = playwright.chromium.launch_persistent_context(profile, **chromium_launch_args())
    try:
        page = context.pages[0] if context.pages else context.new_page()
        page.add_init_script(KEEP_INTERPRETER % vendor.PYSCRIPT.version)
        with running_app(layercode_api_key="lc_never_used") as url:
            page.goto(url + "/?py=pyodide")
            wait_ready(page, timeout_ms=120_000)
            # Chromium stores the code once about 1 MB of it is optimised. A page that goes idle
            # before then (a loaded machine starts it with less of the wasm hot) never gets
            # there, so the test runs Python, as a page in use would, until the code is stored.
            while cached_wasm_bytes(profile) < 500_000:
                page.evaluate(f"layercodeTestInterpreter.runPython({PYTHON_WORK!r})")
                page.wait_for_timeout(250)

            def reload() -> None:
                page.reload()
                wait_ready(page, timeout_ms=120_000)

            cdp = context.new_cdp_session(page)
            # Chromium's wasm cache events are in its DevTools timeline category.
            names = traced_event_names(cdp, "disabled-by-default-devtools.timeline", reload)
        assert "v8.wasm.moduleCacheHit" in names
    finally:
        context.close()


@pytest.mark.skipif(snapshot.loader_name() is None, reason="setup made no Pyodide snapshot")
def test_the_pyodide_page_starts_from_the_snapshot_setup_made(page):
    """With a snapshot in place (server/snapshot.py), the Pyodide page's interpreter is the
    snapshot's loader, Pyodide restores its memory instead of starting Python, and the page's
    Python runs on it to ready. The loader starts Pyodide before PyScript asks for it, then
    hands it PyScript's stdout and stderr: Python's errors still reach PyScript (its error
    plugin shows them on the page). (The page's features on it: test_client.py's Pyodide
    tests.)"""
    loader = snapshot.loader_name()
    requests = RequestLog(page)
    console_errors = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.add_init_script(KEEP_INTERPRETER % vendor.PYSCRIPT.version)
    with running_app(layercode_api_key="lc_never_used") as url:
        page.goto(url + "/?py=pyodide")
        wait_ready(page, timeout_ms=120_000)
        assert page.evaluate("globalThis.layercodePyodideSnapshot") == loader.removesuffix(".mjs")
        page.evaluate("layercodeTestInterpreter.runPython(\"import sys; "
                      "print('written to stderr', file=sys.stderr)\")")  # fmt: skip
        page.wait_for_selector(".py-error:has-text('written to stderr')", state="attached")
    console_errors = [m for m in console_errors if m != "written to stderr"]  # PyScript's log
    name = loader.removesuffix(".mjs")
    assert f"{url}{pyodide_url()}/{name}.bin" in requests.urls
    assert f"{url}{pyodide_url()}/{name}.mjs" in requests.urls
    assert requests.outside() == []
    assert console_errors == [], "\n".join(console_errors)


# The modules the page may import beyond the snapshot: those that hold JavaScript objects
# (PyScript's package, `js`) and the page's own (the client and main.py), which PyScript writes
# into the page at each load.
NOT_IN_A_SNAPSHOT = ("_pyscript", "js", "layercode_client", "main", "polyscript", "pyscript")
MODULES_AT_RESTORE = """
addEventListener("DOMContentLoaded", () => import("/runtime/pyscript/%s/core.js").then(
  ({ hooks }) => hooks.main.onReady.add(({ interpreter }) => {
    globalThis.layercodeTestInterpreter = interpreter;
    globalThis.layercodeModulesAtRestore = interpreter.runPython(
      "import json, sys; json.dumps(sorted(sys.modules))");
    globalThis.layercodeFrozenAtRestore = interpreter.runPython(
      "import gc; gc.get_freeze_count()");
  })));
"""


@pytest.mark.skipif(snapshot.loader_name() is None, reason="setup made no Pyodide snapshot")
def test_the_pyodide_snapshot_holds_every_module_the_page_imports_at_start(page):
    """The standard-library modules the Pyodide page imports on its way to ready are in the
    snapshot already (server/snapshot.py, PRELOADED), not imported afresh on every load (`html`
    and `html.entities`, which PyScript's package imports, were: 70-150 ms of a warm load)."""
    page.add_init_script(MODULES_AT_RESTORE % vendor.PYSCRIPT.version)
    with running_app(layercode_api_key="lc_never_used") as url:
        page.goto(url + "/?py=pyodide")
        wait_ready(page, timeout_ms=120_000)
        at_restore = set(json.loads(page.evaluate("layercodeModulesAtRestore")))
        modules = "import json, sys; json.dumps(sorted(sys.modules))"
        at_ready = json.loads(page.evaluate(f"layercodeTestInterpreter.runPython({modules!r})"))
    imported = [m for m in at_ready if m not in at_restore]
    stdlib = [m for m in imported if m.split(".")[0] not in NOT_IN_A_SNAPSHOT]
    assert stdlib == [], f"imported at start beyond the snapshot: {stdlib}"
    assert "pyscript" in imported  # the check saw the page's imports


@pytest.mark.skipif(snapshot.loader_name() is None, reason="setup made no Pyodide snapshot")
def test_the_pyodide_snapshot_leaves_its_heap_out_of_the_collectors_scans(page):
    """The snapshot's objects are frozen (server/snapshot.py, PREPARE): the page's garbage
    collections scan only what the page made since, not Pyodide's whole start-up again."""
    page.add_init_script(MODULES_AT_RESTORE % vendor.PYSCRIPT.version)
    with running_app(layercode_api_key="lc_never_used") as url:
        page.goto(url + "/?py=pyodide")
        wait_ready(page, timeout_ms=120_000)
        frozen = page.evaluate("layercodeFrozenAtRestore")
    assert frozen > 10_000, f"{frozen} objects frozen at the restore"


def held_until_instantiating(app, released: list[str], holds):
    """Hold each request whose path `holds(path)` until the page says Pyodide instantiates its
    wasm (it asks for `/test-instantiating`). A page that cannot get there without the held
    file is let go after 20 s, so it still starts, and `released` says which came first."""
    state: dict = {}

    async def held(scope, receive, send):
        if scope["type"] == "http":
            instantiating = state.setdefault("instantiating", asyncio.Event())
            if scope["path"] == "/test-instantiating":
                instantiating.set()
                await send({"type": "http.response.start", "status": 204, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
            if holds(scope["path"]):
                try:
                    await asyncio.wait_for(instantiating.wait(), 20)
                    released.append("instantiating")
                except TimeoutError:
                    released.append("held 20 s")
        await app(scope, receive, send)

    return held


def snapshot_held_until_instantiating(app, released: list[str]):
    """The snapshot's download held: an older loader awaited the snapshot before it
    instantiated the wasm."""
    return held_until_instantiating(
        app, released, lambda path: path.endswith(".bin") and snapshot.PREFIX in path
    )


SAY_INSTANTIATING = """
const instantiateStreaming = WebAssembly.instantiateStreaming;
WebAssembly.instantiateStreaming = function (...args) {
  fetch("/test-instantiating");
  return instantiateStreaming.apply(this, args);
};
"""


def pyodide_page_started_holding(page, holding) -> list[str]:
    """The Pyodide page started from its snapshot on a server wrapped by `holding` (one of
    the `*_held_until_instantiating` above); returns what the hold saw first."""
    released: list[str] = []
    page.add_init_script(SAY_INSTANTIATING)
    wrap = functools.partial(holding, released=released)
    with running_app(wrap=wrap, layercode_api_key="lc_never_used") as url:
        page.goto(url + "/?py=pyodide")
        wait_ready(page, timeout_ms=120_000)
        assert page.evaluate("globalThis.layercodePyodideSnapshot") == (
            snapshot.loader_name().removesuffix(".mjs")
        )
    return released


def test_pyodide_instantiates_its_wasm_while_the_snapshot_downloads(page):
    """The loader gives Pyodide the snapshot's memory at once (its size is written into the
    loader) and fills it as the download arrives, so the wasm is instantiated meanwhile instead
    of after (a warm load waited 100-200 ms for the snapshot's read, then instantiated for
    about 110 ms). Pyodide restores the memory only once it is filled (`fsInit`)."""
    released = pyodide_page_started_holding(page, snapshot_held_until_instantiating)
    assert released and set(released) == {"instantiating"}, released


def pyscript_held_until_instantiating(app, released: list[str]):
    """PyScript's entry module (`core.js`) held: a page that left Pyodide's start to PyScript
    (which imports the snapshot's loader once its own modules have run) cannot instantiate
    the wasm without it."""
    core = f"/runtime/pyscript/{vendor.PYSCRIPT.version}/core.js"
    return held_until_instantiating(app, released, lambda path: path == core)


@pytest.mark.skipif(snapshot.loader_name() is None, reason="setup made no Pyodide snapshot")
def test_the_pyodide_page_starts_pyodide_before_pyscript_has_loaded(page):
    """index.html imports the snapshot's loader, which starts Pyodide, as soon as the page is
    parsed, not when PyScript imports it once its own modules have loaded and run (about 190
    ms into a warm load): Pyodide gets as far as instantiating its wasm with PyScript's
    modules still held back, and the page then starts as before."""
    released = pyodide_page_started_holding(page, pyscript_held_until_instantiating)
    assert released == ["instantiating"], released


# PyScript's hooks, taken once the page's own module scripts ran (PyScript reads the page's
# config when its module first runs: importing it earlier would start it with none).
PYTHON_WORK = "sorted(str(i * i) for i in range(20_000))"  # some of the interpreter hot
KEEP_INTERPRETER = """
addEventListener("DOMContentLoaded", () => import("/runtime/pyscript/%s/core.js").then(
  ({ hooks }) => hooks.main.onReady.add(({ interpreter }) => {
    globalThis.layercodeTestInterpreter = interpreter;
  })));
"""
CLIENT_BYTECODE = """
import importlib.util, json, sys
found = {}
for name, module in sorted(sys.modules.items()):
    if name.startswith("layercode_client"):
        try:
            with open(module.__spec__.cached, "rb") as f:
                pyc = f.read()
        except OSError:
            found[name] = "no .pyc"
            continue
        with open(module.__file__, "rb") as f:
            source_hash = importlib.util.source_hash(f.read())
        checked = int.from_bytes(pyc[4:8], "little") == 3
        found[name] = "checked, matches" if checked and pyc[8:16] == source_hash else pyc[:16].hex()
json.dumps(found)
"""


def modules_with_bytecode() -> set[str]:
    """The client's modules for whose source setup made bytecode (server/pyc.py)."""
    entries = pyc.bytecode_for(_source_files(SOURCE_DIR))
    return {
        n.replace("/__pycache__/", "/").split(".")[0].replace("/", ".").removesuffix(".__init__")
        for n in entries
    }


@pytest.mark.skipif(not modules_with_bytecode(), reason="setup compiled no client bytecode")
def test_the_pyodide_page_imports_the_client_from_its_precompiled_bytecode(page):
    """With setup's bytecode in place (server/pyc.py), each module of the client the Pyodide
    page imported has beside it the checked hash-based .pyc of its source, unpacked from the
    wheel, which Python loads instead of compiling the source. (Pyodide writes no .pyc of its
    own: without setup's, there is none.)"""
    expected = modules_with_bytecode()
    page.add_init_script(KEEP_INTERPRETER % vendor.PYSCRIPT.version)
    with running_app(layercode_api_key="lc_never_used") as url:
        page.goto(url + "/?py=pyodide")
        wait_ready(page, timeout_ms=120_000)
        found = json.loads(page.evaluate("code => layercodeTestInterpreter.runPython(code)",
                                         CLIENT_BYTECODE))  # fmt: skip
    with_bytecode = {name: how for name, how in found.items() if name in expected}
    assert "layercode_client.client" in with_bytecode
    assert set(with_bytecode.values()) == {"checked, matches"}, found
