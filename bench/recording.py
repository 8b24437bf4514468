"""Stopping a recording: how long `stop_recording()` plus handing the WAV to the page takes, per
recorded second, on MicroPython and on Pyodide, in Chromium.

Two ways side by side in the same page, on the same recording (`--seconds` of 100 ms stereo
chunks, microphone and agent, laid out by layercode_client/recording.py):

- "Python": the client before JS built the file: chunks decoded by the browser
  (`Uint8Array.fromBase64`, copied into bytes), the WAV built in Python (`recording.build_wav`:
  on MicroPython a per-sample loop, there are no extended slices) and given to JS as pages did
  (`Uint8Array.new(bytes)` on MicroPython, `to_js` on Pyodide);
- "browser": what `stop_recording()` does in a page now (the microphone's `build_wav`: on
  MicroPython the recorder worklet decodes, places and interleaves on the audio thread and the
  bytes cross as hex; on Pyodide the Python build, faster there) and `browser.js_bytes()`.
  The page opens the (fake) microphone so the worklet runs.
- "ended, binascii" and "ended, browser decodes": stopped after the session ended, when no
  microphone worklet is left: the WAV built in Python (`recording.build_wav`), its chunks
  decoded by `binascii` (pure Python on MicroPython: how it was) or by the page's browser port
  (`PageBrowser.decode_base64`: `Uint8Array.fromBase64`, the bytes across as hex: what
  `stop_recording()` does now), then `browser.js_bytes()`.

    ./dev bench recording [--seconds 5] [--runs 3]
"""

import argparse
import contextlib
import json
import os

from common import chromium_launch_args, median, print_table, save, serve
from playwright.sync_api import sync_playwright

from server.vendor import MICROPYTHON, PYODIDE, micropython_url, pyodide_url, pyscript_url
from server.wheel import wheel_filename
from tests.support.scripted_pipeline import ScriptedPipeline

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<script>delete WebAssembly.Suspending; delete WebAssembly.promising;</script>
<script type="module" src="{pyscript}/core.js"></script></head>
<body><script type="{script_type}" config='{config}'>
import asyncio
import binascii
import json
import struct
import sys

import js
from pyscript import ffi
from layercode_client.browser import BrowserMicrophone, PageBrowser, js_bytes
from layercode_client.recording import Recording, build_wav

SECONDS = {seconds}
MICROPYTHON = sys.implementation.name == "micropython"
# One 100 ms chunk of a 16 kHz ramp, encoded once (MicroPython's base64 is slow), used throughout.
CHUNK = binascii.b2a_base64(struct.pack("<1600h", *range(-800, 800)), newline=False).decode()


def recording():
    rec = Recording(0, SECONDS + 1)
    for n in range(SECONDS * 10):
        rec.add_microphone(CHUNK, 16000, 100 * (n + 1))
        rec.add_agent(CHUNK, 100 * n + 50)
    return rec


async def timed(build, to_js):
    frames, pieces = recording().layout()
    started = js.performance.now()
    wav = await build(frames, pieces)
    built = js.performance.now()
    array = to_js(wav)
    done = js.performance.now()
    assert int(array.length) == len(wav) == 44 + SECONDS * 64000 + 3200
    return {{"build_ms": built - started, "to_js_ms": done - built, "total_ms": done - started}}


def old_decode(text):
    array = js.Uint8Array.fromBase64(text)
    return bytes(array) if MICROPYTHON else array.to_bytes()


async def old_build(frames, pieces):
    return build_wav(frames, pieces, old_decode)


def old_to_js(wav):
    return js.Uint8Array.new(wav if MICROPYTHON else ffi.to_js(wav))


async def run():
    microphone = BrowserMicrophone()
    await microphone.start(16000, 100, lambda *chunk: None)

    async def browser_build(frames, pieces):  # as stop_recording() does
        return await microphone.build_wav(frames, pieces) or build_wav(frames, pieces)

    results = {{
        "python": await timed(old_build, old_to_js),
        "browser": await timed(browser_build, js_bytes),
    }}
    microphone.stop()

    async def ended_binascii(frames, pieces):  # the session ended: no worklet left
        return build_wav(frames, pieces)

    async def ended_browser(frames, pieces):
        return build_wav(frames, pieces, PageBrowser().decode_base64)

    results["ended, binascii"] = await timed(ended_binascii, js_bytes)
    results["ended, browser decodes"] = await timed(ended_browser, js_bytes)
    js.document.body.dataset.result = json.dumps(results)


asyncio.create_task(run())
</script></body></html>
"""

INTERPRETERS = ("MicroPython", "Pyodide")
# (before, after) pairs: while the microphone runs; stopped after the session ended.
COMPARED = (("python", "browser"), ("ended, binascii", "ended, browser decodes"))
WAYS = [way for pair in COMPARED for way in pair]


def run_page(playwright, pipeline, url, interpreter, seconds) -> dict:
    micropython = interpreter == "MicroPython"
    engine = (
        f"{micropython_url()}/micropython.mjs" if micropython else f"{pyodide_url()}/pyodide.mjs"
    )
    config = json.dumps({"interpreter": engine, "files": {f"/client/{wheel_filename()}": "./*"}})
    pipeline.pages["recording.html"] = PAGE.format(
        pyscript=pyscript_url(),
        config=config,
        script_type="mpy" if micropython else "py",
        seconds=seconds,
    )
    browser = playwright.chromium.launch(**chromium_launch_args())
    try:
        page = browser.new_page()
        page.goto(url + "/test-pages/recording.html")
        page.wait_for_selector("body[data-result]", state="attached", timeout=600_000)
        return json.loads(page.get_attribute("body", "data-result"))
    finally:
        browser.close()


def figures(results: list[dict], way: str, seconds: int) -> dict:
    """Medians over the runs, per recorded second."""
    keys = ("build_ms", "to_js_ms", "total_ms")
    return {key: median([r[way][key] for r in results]) / seconds for key in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {which: [] for which in INTERPRETERS}
    pipeline = ScriptedPipeline()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(serve(pipeline.app()))
        with sync_playwright() as playwright:
            for n in range(args.runs):
                for which in INTERPRETERS:
                    result = run_page(playwright, pipeline, url, which, args.seconds)
                    runs[which].append(result)
                    print(f"  run {n + 1} {which:11s}: {json.dumps(result)}")
    load_after = os.getloadavg()

    per_second = {
        which: {way: figures(results, way, args.seconds) for way in WAYS}
        for which, results in runs.items()
    }
    rows = []
    for which in INTERPRETERS:
        for before_way, after_way in COMPARED:
            for way in (before_way, after_way):
                got = per_second[which][way]
                rows.append([f"{which}, {way}", f"{got['build_ms']:.1f}",
                             f"{got['to_js_ms']:.1f}", f"{got['total_ms']:.1f}"])  # fmt: skip
            before, after = (per_second[which][w]["total_ms"] for w in (before_way, after_way))
            rows.append([f"{which}, speed-up", "", "", f"{before / after:.1f}×"])
    print_table(
        f"stop_recording() + WAV to JS, ms per recorded second (median of {args.runs}, "
        f"{args.seconds} s recordings), MicroPython {MICROPYTHON.version}, Pyodide "
        f"{PYODIDE.version}; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after",
        ["interpreter, way", "build", "to JS", "total"],
        rows,
    )
    save(
        "recording",
        {
            "seconds": args.seconds,
            "runs": args.runs,
            "load_average": {"before": load_before, "after": load_after},
            "ms_per_recorded_s": per_second,
            "detail": runs,
        },
    )


if __name__ == "__main__":
    main()
