"""Serving the page, the vendored runtime and the client wheel: types, caching, compression."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from io import BytesIO

import pytest
from starlette.testclient import TestClient

from server import vendor
from server.app import create_app
from server.config import Settings
from server.wheel import build_wheel
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def client():
    with TestClient(
        create_app(Settings(pipeline_id="pl_page")), raise_server_exceptions=False
    ) as c:
        yield c


PYODIDE = f"/runtime/pyodide/{vendor.PYODIDE.version}"
PYSCRIPT = f"/runtime/pyscript/{vendor.PYSCRIPT.version}"


def test_health_reports_runtime_and_pipeline(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["stores"] == {"session_keys": "memory", "history": "sqlite"}
    assert body["runtime"] == {
        "pyscript": vendor.PYSCRIPT.version,
        "micropython": vendor.MICROPYTHON.version,
        "pyodide": vendor.PYODIDE.version,
        "vendored": True,
    }
    assert body["client_wheel"] == build_wheel().filename


def test_index_has_page_settings_and_is_revalidated(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert '<meta name="layercode:pipeline-id" content="pl_page">' in response.text
    assert '<meta name="layercode:authorize-url" content="/api/authorize">' in response.text
    again = client.get("/", headers={"if-none-match": response.headers["etag"]})
    assert again.status_code == 304


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/main.py", "text/x-python; charset=utf-8"),
        ("/pyscript.toml", "application/toml; charset=utf-8"),
        ("/pyscript-pyodide.toml", "application/toml; charset=utf-8"),
        ("/assets/style.css", "text/css; charset=utf-8"),
    ],
)
def test_page_files(client, path, content_type):
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["cache-control"] == "no-cache"
    assert client.get(path, headers={"if-none-match": response.headers["etag"]}).status_code == 304


@pytest.mark.parametrize(
    "path",
    ["/server/config.py", "/pyproject.toml", "/.env", "/assets/../server/app.py",
     "/runtime/../server/app.py", "/runtime/%2e%2e/server/app.py", f"{PYODIDE}/.complete",
     "/client/other-1.0-py3-none-any.whl"],
)  # fmt: skip
def test_nothing_outside_the_page_is_served(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert "error" in response.json()


def test_wasm_is_served_precompressed_with_its_type_and_a_year_of_cache(client):
    plain = (vendor.PYODIDE.target / "pyodide.asm.wasm").read_bytes()
    response = client.get(f"{PYODIDE}/pyodide.asm.wasm", headers={"accept-encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/wasm"
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert int(response.headers["content-length"]) < len(plain) * 0.5
    assert response.content == plain  # the client decoded it


def test_runtime_without_gzip_is_sent_plain(client):
    response = client.get(f"{PYSCRIPT}/core.js", headers={"accept-encoding": "identity"})
    assert response.status_code == 200
    assert "content-encoding" not in response.headers
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"


def test_micropip_lock_hash_matches_the_served_wheel(client):
    import hashlib
    import json

    lock = json.loads(client.get(f"{PYODIDE}/pyodide-lock.json").content)
    entry = lock["packages"]["micropip"]
    wheel = client.get(f"{PYODIDE}/{entry['file_name']}")
    assert wheel.status_code == 200
    assert hashlib.sha256(wheel.content).hexdigest() == entry["sha256"]


def test_page_and_toml_name_the_vendored_versions():
    """index.html and the two configs are static files: they must follow server/vendor.py."""
    page = (ROOT / "index.html").read_text()
    toml = (ROOT / "pyscript.toml").read_text()
    pyodide_toml = (ROOT / "pyscript-pyodide.toml").read_text()
    micropython = f"/runtime/micropython/{vendor.MICROPYTHON.version}"
    assert f"./runtime/pyscript/{vendor.PYSCRIPT.version}/core.js" in page
    assert f'runtime: ".{micropython}/"' in page and f'runtime: ".{PYODIDE}/"' in page
    assert f'interpreter = ".{micropython}/micropython.mjs"' in toml
    assert f'interpreter = ".{PYODIDE}/pyodide.mjs"' in pyodide_toml
    for href in re.findall(r'"\./runtime/(pyscript/[^"]+\.js)"', page):  # preloaded chunks
        assert (vendor.VENDOR_DIR / href).is_file(), f"index.html preloads a missing {href}"
    for text in (page, toml, pyodide_toml, (ROOT / "main.py").read_text()):
        assert not re.search(r"https?://(?!127\.0\.0\.1)", text.replace("http://www.w3.org", ""))


def test_client_wheel_is_a_real_installable_wheel(client, tmp_path):
    built = build_wheel()
    response = client.get(f"/client/{built.filename}")
    assert response.status_code == 200
    assert response.content == built.data
    assert (
        client.get(
            f"/client/{built.filename}", headers={"if-none-match": response.headers["etag"]}
        ).status_code
        == 304
    )
    names = zipfile.ZipFile(BytesIO(response.content)).namelist()
    assert "layercode_client/protocol.py" in names
    wheel_path = tmp_path / built.filename
    wheel_path.write_bytes(response.content)
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--target", str(target), str(wheel_path)],
        check=True,
    )  # fmt: skip
    check = subprocess.run(
        [sys.executable, "-c", "import layercode_client.protocol as p; print(p.__file__)"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(target) in check.stdout


def test_wheel_build_is_reproducible():
    assert build_wheel().data == build_wheel().data


def test_small_responses_are_not_compressed_and_large_page_files_are(client):
    assert "content-encoding" not in client.get("/health").headers
    response = client.get("/assets/style.css", headers={"accept-encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers.get("content-encoding") == "gzip"


def test_the_pages_load_the_client_files_the_server_serves(client):
    """Pyodide's config (and the page's preload) names the wheel /client/ serves; MicroPython's
    lists every file of the package, precompiled, as /client/mpy/ serves them."""
    import tomllib

    from server.wheel import MPY_URL_PATH, SOURCE_DIR, build_mpy_files, wheel_filename

    page = (ROOT / "index.html").read_text()
    config = tomllib.loads((ROOT / "pyscript-pyodide.toml").read_text())
    assert config["files"] == {f"./client/{wheel_filename()}": "./*"}
    assert f'"./client/{wheel_filename()}"' in page
    files = tomllib.loads((ROOT / "pyscript.toml").read_text())["files"]
    compiled = build_mpy_files()
    assert files == {f".{MPY_URL_PATH}{name}": f"./{name}" for name in compiled}
    for path in SOURCE_DIR.rglob("*.py"):
        assert path.relative_to(SOURCE_DIR.parent).with_suffix(".mpy").as_posix() in compiled
    for url in files:
        response = client.get(url[1:])
        assert response.status_code == 200
        assert response.content == compiled[url[len(MPY_URL_PATH) + 1 :]]
        again = client.get(url[1:], headers={"if-none-match": response.headers["etag"]})
        assert again.status_code == 304
    assert all(data[:2] == b"M\x06" for n, data in compiled.items() if n.endswith(".mpy"))
    assert '"./client/mpy/layercode_client/client.mpy"' in page  # preloaded
    assert client.get("/client/mpy/layercode_client/nothing.mpy").status_code == 404
