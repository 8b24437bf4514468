"""The exported static folder boots from another origin and authorizes cross-origin."""

from __future__ import annotations

import re
import tomllib

import pytest
from starlette.staticfiles import StaticFiles

from server import snapshot, vendor
from server.app import create_app
from server.config import Settings
from server.export import export_site
from tests.browser.conftest import RequestLog, wait_ready
from tests.support.servers import free_port, serve

pytestmark = pytest.mark.browser


def auth_server(port, settings, origins):
    """The auth server alone on `port`, allowing `origins` to call it."""
    return serve(create_app(Settings(**settings, cors_allow_origins=origins)), port=port)


def static_server(folder, port):
    """Any static host will do; Starlette's StaticFiles stands in for one."""
    return serve(StaticFiles(directory=folder, html=True), port=port, lifespan="off")


def test_export_contents(tmp_path):
    target = export_site(tmp_path / "out", "https://auth.example/api/authorize", "pl_9")
    page = (target / "index.html").read_text()
    assert 'content="https://auth.example/api/authorize"' in page
    assert 'content="pl_9"' in page
    for runtime in ("pyscript", "micropython", "pyodide"):
        assert (target / "runtime" / runtime).is_dir()
    assert (target / "pyscript.toml").is_file() and (target / "pyscript-pyodide.toml").is_file()
    assert not list(target.rglob("*.gz")) and not list(target.rglob(".complete"))
    assert not list(target.rglob("*.zst"))
    assert len(list((target / "client").glob("*.whl"))) == 1
    for url in tomllib.loads((target / "pyscript.toml").read_text())["files"]:
        assert (target / url).is_file(), url  # the client precompiled for MicroPython
    hashed = re.findall(r'\./(v/[0-9a-f]{16}/[^"\\]+)', page)  # the page's own, and its configs'
    assert {h.split("/", 2)[2] for h in hashed} >= {"main.py", "assets/style.css"}
    for name in hashed:
        assert (target / name).is_file(), name
    loader = snapshot.loader_name()
    if loader:  # the Pyodide page starts from setup's snapshot in the export too
        assert f"{vendor.pyodide_url()}/{loader}" in page
        runtime = target / vendor.pyodide_url().strip("/")
        assert (runtime / loader).is_file() and (runtime / loader).with_suffix(".bin").is_file()
        assert {p.name.split("-")[1] for p in runtime.glob("snapshot-*")} == {"sparse"}
    # Exporting again over an earlier export replaces it; a foreign folder is refused.
    export_site(tmp_path / "out", "https://auth.example/api/authorize")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="not empty"):
        export_site(tmp_path / "foreign", "https://auth.example/api/authorize")


@pytest.mark.parametrize("interpreter,query", [("micropython", ""), ("pyodide", "?py=pyodide")])
def test_exported_page_authorizes_cross_origin(page, tmp_path, interpreter, query):
    """The static site on one origin, the auth server (embedded pipeline) on another; both
    pages (MicroPython, the default, and Pyodide) work from the export."""
    site_port, auth_port = free_port(), free_port()
    site_origin = f"http://127.0.0.1:{site_port}"
    auth_url = f"http://127.0.0.1:{auth_port}/api/authorize"
    folder = export_site(tmp_path / "site", auth_url)
    requests = RequestLog(page)
    settings = {"data_dir": tmp_path / "data"}
    with auth_server(auth_port, settings, (site_origin,)), static_server(folder, site_port):
        page.goto(site_origin + "/" + query)
        wait_ready(page)
        assert page.get_attribute("body", "data-interpreter") == interpreter
        if interpreter == "pyodide" and snapshot.loader_name():
            started_from = page.evaluate("globalThis.layercodePyodideSnapshot")
            assert started_from == snapshot.loader_name().removesuffix(".mjs")
        page.click("#connect")
        page.wait_for_selector("#status[data-status=connected]", timeout=20_000)
        assert "connected (sess_" in page.inner_text("#log")
        page.click("#connect")  # disconnect
        page.wait_for_selector("#status[data-status=disconnected]", timeout=10_000)
    assert f"{auth_url}" in requests.urls
    assert requests.outside() == []


def test_exported_page_from_an_origin_not_allowlisted_is_refused(
    page, cloud, cloud_settings, tmp_path
):
    site_port, auth_port = free_port(), free_port()
    auth_url = f"http://127.0.0.1:{auth_port}/api/authorize"
    folder = export_site(tmp_path / "site", auth_url)
    with (
        auth_server(auth_port, cloud_settings, ("https://only-this.example",)),
        static_server(folder, site_port),
    ):
        page.goto(f"http://127.0.0.1:{site_port}/")
        wait_ready(page)
        page.click("#connect")
        page.wait_for_selector("#error:not([hidden])", timeout=10_000)
        assert "could not reach the authorize endpoint" in page.inner_text("#error")
        assert page.get_attribute("#status", "data-status") == "error"
    assert cloud.received == []
