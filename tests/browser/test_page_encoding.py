"""The runtime sent as zstd (server/static.py, server/vendor.py): Chromium decodes it, the page
starts on both interpreters, and a warm Pyodide load still takes its compiled wasm back from
the code cache."""

from __future__ import annotations

import shutil

import pytest

from server import static, vendor
from tests.browser.conftest import running_app, wait_ready
from tests.browser.test_boot import cached_wasm_bytes, traced_event_names
from tests.conftest import chromium_launch_args

WASM = {"micropython": "micropython.wasm", "pyodide": "pyodide.asm.wasm"}
PAGES = {"micropython": "/", "pyodide": "/?py=pyodide"}


@pytest.fixture(scope="module")
def zstd_runtime(tmp_path_factory):
    """The vendored runtime copied into a folder of its own and served from there, with the
    `.zst` files setup writes beside its `.gz` ones (at a fast level: what is tested here is
    that the browser decodes them, not how small they are)."""
    root = tmp_path_factory.mktemp("vendor")
    shutil.copytree(
        vendor.VENDOR_DIR, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.zst")
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vendor, "ZSTD_LEVEL", 3)
        for package in (vendor.PYSCRIPT, vendor.MICROPYTHON, vendor.PYODIDE):
            vendor.add_zstd(root / package.target.relative_to(vendor.VENDOR_DIR))
        patch.setattr(static, "VENDOR_DIR", root)
        yield root


@pytest.mark.parametrize("interpreter", ["micropython", "pyodide"])
def test_the_page_starts_on_a_runtime_sent_as_zstd(zstd_runtime, page, interpreter):
    encodings = {}

    def seen(response):
        if "/runtime/" in response.url:
            encodings[response.url.rsplit("/", 1)[-1]] = response.headers.get("content-encoding")

    page.on("response", seen)
    with running_app(layercode_api_key="lc_never_used") as url:
        page.goto(url + PAGES[interpreter])
        wait_ready(page, timeout_ms=120_000)
    assert encodings[WASM[interpreter]] == "zstd"
    assert page.evaluate("document.body.dataset.interpreter") == interpreter


def test_a_warm_pyodide_load_still_reuses_the_compiled_wasm_sent_as_zstd(
    zstd_runtime, playwright, tmp_path
):
    """Chromium keeps compiled wasm by the response's URL, whatever its coding: as with gzip
    (test_boot.py), the return visit takes Pyodide's compiled wasm back from the code cache."""
    profile = tmp_path / "profile"
    context = playwright.chromium.launch_persistent_context(profile, **chromium_launch_args())
    try:
        page = context.pages[0] if context.pages else context.new_page()
        with running_app(layercode_api_key="lc_never_used") as url:
            page.goto(url + PAGES["pyodide"])
            wait_ready(page, timeout_ms=120_000)
            # Chromium stores the code once enough of it is optimised, seconds after the load.
            while cached_wasm_bytes(profile) < 500_000:
                page.wait_for_timeout(250)

            def reload() -> None:
                page.reload()
                wait_ready(page, timeout_ms=120_000)

            cdp = context.new_cdp_session(page)
            names = traced_event_names(cdp, "disabled-by-default-devtools.timeline", reload)
        assert "v8.wasm.moduleCacheHit" in names
    finally:
        context.close()
