"""Serving the page, the vendored runtime and the client wheel: types, caching, compression."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from io import BytesIO

import pytest
from starlette.testclient import TestClient

from server import vendor
from server.app import create_app
from server.config import Settings
from server.page import PageFiles, config_json, pyodide_interpreter, wheel_members
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


@pytest.fixture
def zstd_runtime(tmp_path, monkeypatch):
    """A copy of the vendored MicroPython in a runtime folder of its own, served from there,
    with setup's `.zst` files added beside its `.gz` ones (vendor.add_zstd)."""
    from server import static

    folder = tmp_path / "micropython" / vendor.MICROPYTHON.version
    shutil.copytree(vendor.MICROPYTHON.target, folder, ignore=shutil.ignore_patterns("*.zst"))
    monkeypatch.setattr(vendor, "VENDOR_DIR", tmp_path)
    monkeypatch.setattr(static, "VENDOR_DIR", tmp_path)
    vendor.add_zstd(folder)
    with TestClient(create_app(Settings(layercode_api_key="k"))) as client:
        yield folder, client


def test_setup_writes_zstd_beside_gzip_within_the_window_browsers_decode(zstd_runtime):
    """A `.zst` beside each `.gz`, of the same bytes, with a window of at most 8 MB (RFC 9659:
    the most a browser is asked to hold; Chromium refuses a larger one and the page never
    starts). A second pass leaves them alone."""
    import zstandard

    folder, _ = zstd_runtime
    gzipped = sorted(p.name.removesuffix(".gz") for p in folder.glob("*.gz"))
    assert gzipped and sorted(p.name.removesuffix(".zst") for p in folder.glob("*.zst")) == gzipped
    wasm = folder / "micropython.wasm.zst"
    packed = wasm.read_bytes()
    assert (
        zstandard.ZstdDecompressor().decompress(packed)
        == (folder / "micropython.wasm").read_bytes()
    )
    assert zstandard.get_frame_parameters(packed).window_size <= 8 * 2**20
    assert len(packed) < len((folder / "micropython.wasm.gz").read_bytes())
    written = wasm.stat().st_mtime_ns
    full = folder / "snapshot-0123456789abcdef.bin"  # an earlier setup's, never loaded
    full.write_bytes(b"memory" * 1000)
    full.with_name(full.name + ".gz").write_bytes(gzip.compress(full.read_bytes()))
    vendor.add_zstd(folder)
    assert wasm.stat().st_mtime_ns == written
    assert not full.with_name(full.name + ".zst").exists()


@pytest.mark.parametrize(
    ("accepted", "encoding"),
    [("gzip, deflate, br, zstd", "zstd"), ("gzip, deflate, br", "gzip"), ("zstd;q=0, gzip", "gzip"),
     ("identity", None), ("", None)],
)  # fmt: skip
def test_the_runtime_is_sent_as_zstd_where_the_browser_takes_it(zstd_runtime, accepted, encoding):
    """zstd first (a warm load decodes it from the HTTP cache about 5x faster than gzip), gzip
    for a browser without it, the file as it is for one that takes neither."""

    folder, client = zstd_runtime
    url = f"/runtime/micropython/{vendor.MICROPYTHON.version}/micropython.wasm"
    response = client.get(url, headers={"accept-encoding": accepted})
    assert response.status_code == 200
    assert response.headers.get("content-encoding") == encoding
    assert "Accept-Encoding" in response.headers["vary"]
    assert response.headers["content-type"] == "application/wasm"
    # httpx decodes zstd with `zstandard` (a dependency: setup writes the `.zst` files with it)
    assert response.content == (folder / "micropython.wasm").read_bytes()


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

    config = tomllib.loads((ROOT / "pyscript-pyodide.toml").read_text())
    assert config["files"] == {f"./client/{wheel_filename()}": "./*", "./main.py": "./main.py"}
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
    assert client.get("/client/mpy/layercode_client/nothing.mpy").status_code == 404


INLINE_CONFIG = re.compile(r'type: "(mpy|py)", config: ("(?:[^"\\]|\\.)*")')


def served_configs(page: str) -> dict[str, dict]:
    """The PyScript configs the served page carries, by script type."""
    return {kind: json.loads(json.loads(text)) for kind, text in INLINE_CONFIG.findall(page)}


def page_references(page: str) -> list[str]:
    """Every URL the served page (and its configs) names on this server, without the `./`."""
    names = re.findall(r"""["']\./([^"'\s]+)["']""", INLINE_CONFIG.sub("", page))
    for config in served_configs(page).values():
        names += [url.removeprefix("./") for url in config["files"]]
    return names


def test_served_page_names_its_files_under_hashed_immutable_urls(client):
    """A warm load asks for nothing but the page: each file it names is cached as immutable,
    under a URL that carries the file's digest; the configs are in the page, not fetched."""
    page = client.get("/").text
    configs = served_configs(page)
    assert set(configs) == {"mpy", "py"}
    for kind, name in (("mpy", "pyscript.toml"), ("py", "pyscript-pyodide.toml")):
        source = tomllib.loads((ROOT / name).read_text())
        # Pyodide's is the snapshot's loader when setup made one (tested below).
        assert configs[kind]["interpreter"] == pyodide_interpreter(source["interpreter"])
        targets = list(source["files"].values())
        assert list(configs[kind]["files"].values()) == targets
    references = page_references(page)
    hashed = [name for name in references if name.startswith("v/")]
    named = {n.split("/", 2)[2] for n in hashed}
    assert {"main.py", "assets/style.css", "assets/icon.svg",
            "client/mpy/layercode_client/client.mpy",
            f"client/{build_wheel().filename}"} <= named  # fmt: skip
    assert all(n.startswith(("v/", "runtime/")) for n in references), references
    for name in hashed:
        _, digest, path = name.split("/", 2)
        response = client.get("/" + name)
        assert response.status_code == 200, name
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        plain = client.get("/" + path)
        assert response.content == plain.content
        assert response.headers["content-type"] == plain.headers["content-type"]
        assert hashlib.sha256(response.content).hexdigest().startswith(digest)


def test_a_changed_page_file_gets_a_new_url(tmp_path, monkeypatch):
    """The digest follows the file's content: an edit gives a new URL, and the old URL (from a
    page loaded before the edit) gets the new file revalidated, never cached as immutable."""
    from server import static

    for name in ("index.html", "main.py", "pyscript.toml", "pyscript-pyodide.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "assets", tmp_path / "assets")
    monkeypatch.setattr(static, "ROOT", tmp_path)
    with TestClient(create_app(Settings(layercode_api_key="k"))) as client:
        before = [n for n in page_references(client.get("/").text) if n.endswith("/main.py")]
        (tmp_path / "main.py").write_text("print('changed')\n")
        after = [n for n in page_references(client.get("/").text) if n.endswith("/main.py")]
        assert len(set(before)) == len(set(after)) == 1 and before != after
        fresh = client.get("/" + after[0])
        assert fresh.text == "print('changed')\n"
        assert fresh.headers["cache-control"] == "public, max-age=31536000, immutable"
        stale = client.get("/" + before[0])
        assert stale.status_code == 200 and stale.text == "print('changed')\n"
        assert stale.headers["cache-control"] == "no-cache"
        assert client.get("/v/0123456789abcdef/server/app.py").status_code == 404


def test_the_page_preloads_main_py_from_where_pyscript_fetches_it(client):
    """PyScript fetches main.py only once the interpreter is up; the page asks for it at the
    start, under the same URL, so PyScript's fetch takes the preloaded response: as the
    MicroPython page's script, and as a file of the Pyodide config (its script imports it)."""
    page = client.get("/").text
    preloaded = re.findall(r'early\("preload", "\./(v/[0-9a-f]+/main\.py)", "fetch"\)', page)
    loaded = re.findall(r'main\.src = "\./(v/[0-9a-f]+/main\.py)";', page)
    pyodide_files = served_configs(page)["py"]["files"]
    written = [url.removeprefix("./") for url, to in pyodide_files.items() if to == "./main.py"]
    assert len(preloaded) == len(loaded) == 1 and preloaded == loaded == written
    assert client.get("/" + loaded[0]).content == (ROOT / "main.py").read_bytes()
    assert 'main.textContent = "import main"' in page


def test_the_configs_leave_out_plugins_the_vendored_pyscript_has():
    """`plugins = ["!name"]` leaves a PyScript plugin out only if `name` is one: a renamed
    plugin would be loaded again, silently."""
    core = next((vendor.VENDOR_DIR / "pyscript" / vendor.PYSCRIPT.version).glob("core-*.js"))
    known = set(re.findall(r'"?([\w-]+)"?:\(\)=>import\("\./[\w-]+\.js"\)', core.read_text()))
    assert {"py-editor", "py-terminal", "error"} <= known
    for name in ("pyscript.toml", "pyscript-pyodide.toml"):
        left_out = tomllib.loads((ROOT / name).read_text())["plugins"]
        assert left_out and all(p.startswith("!") and p[1:] in known for p in left_out)
        assert "!error" not in left_out  # it shows Python's errors on the page


def test_the_pyodide_page_starts_from_a_snapshot_only_when_setup_made_one(tmp_path, monkeypatch):
    """With a complete snapshot beside Pyodide (server/snapshot.py), the Pyodide page's config
    names its loader, served gzipped and immutable like the rest of the runtime; without one
    (or with only the snapshot, its loader not yet written), the page names Pyodide itself.
    The MicroPython page never changes."""
    from server import static

    folder = tmp_path / "pyodide" / vendor.PYODIDE.version
    shutil.copytree(vendor.PYODIDE.target, folder, ignore=shutil.ignore_patterns("snapshot-*"))
    monkeypatch.setattr(vendor, "VENDOR_DIR", tmp_path)
    monkeypatch.setattr(static, "VENDOR_DIR", tmp_path)
    sources = {
        kind: tomllib.loads((ROOT / name).read_text())["interpreter"]
        for kind, name in (("mpy", "pyscript.toml"), ("py", "pyscript-pyodide.toml"))
    }
    with TestClient(create_app(Settings(layercode_api_key="k"))) as client:
        configs = served_configs(client.get("/").text)
        assert {kind: config["interpreter"] for kind, config in configs.items()} == sources
        name = "snapshot-sparse-0123456789abcdef"
        (folder / f"{name}.bin").write_bytes(b"memory" * 1000)
        (folder / f"{name}.bin.gz").write_bytes(gzip.compress(b"memory" * 1000))
        assert served_configs(client.get("/").text)["py"]["interpreter"] == sources["py"]
        (folder / f"{name}.mjs").write_text("export const version = 'x';\n")
        configs = served_configs(client.get("/").text)
        assert configs["py"]["interpreter"] == f".{PYODIDE}/{name}.mjs"
        assert configs["mpy"]["interpreter"] == sources["mpy"]
        with_packages = tmp_path / "pyscript-pyodide.toml"  # an app that adds numpy, say
        with_packages.write_text(f'interpreter = "{sources["py"]}"\npackages = ["numpy"]\n')
        served = json.loads(config_json(with_packages, PageFiles({})))
        assert served["interpreter"] == sources["py"]  # the loader would refuse the packages
        for file, kind in ((f"{name}.mjs", "text/javascript"), (f"{name}.bin", "application/")):
            response = client.get(f"{PYODIDE}/{file}", headers={"accept-encoding": "gzip"})
            assert response.status_code == 200
            assert response.headers["content-type"].startswith(kind)
            assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["content-encoding"] == "gzip"
        assert response.content == b"memory" * 1000


def test_the_pyodide_config_can_name_the_wheels_files_one_by_one(client, monkeypatch):
    """With FILE_BY_FILE (off by default; bench/start_ab.py's `wheel` variant turns it over),
    the Pyodide config names the wheel's files, each under its hashed URL, where it named the
    wheel."""
    from server import page, static

    monkeypatch.setattr(page, "FILE_BY_FILE", True)
    files = static.current_page_files(client.app.state)
    config = json.loads(config_json(ROOT / "pyscript-pyodide.toml", files))
    members = wheel_members(build_wheel().data)
    assert list(config["files"].values()) == [*(f"./{name}" for name in members), "./main.py"]
    for url, target in config["files"].items():
        response = client.get(url.removeprefix("."))
        assert response.status_code == 200, url
        name = target.removeprefix("./")
        expected = (ROOT / name).read_bytes() if name == "main.py" else members[name]
        assert response.content == expected
