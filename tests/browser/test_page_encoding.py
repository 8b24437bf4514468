"""The runtime sent as zstd (server/static.py, server/vendor.py): Chromium decodes it, the page
starts on both interpreters. (A warm Pyodide load takes its compiled wasm back from the code
cache whatever the coding: test_boot.py's test runs on the `.zst` files setup writes.)"""

from __future__ import annotations

import shutil

import pytest

from server import static, vendor
from tests.browser.conftest import running_app, wait_ready

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
        vendor.add_zstd_to_runtimes(root)
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
