"""The demo page as it is served and exported: every file it names under a content-hashed URL,
and its PyScript configs written into it.

A warm load of the page then asks the server for the page alone. Before, each reload revalidated
the stylesheet (which holds back the page's scripts), the config, main.py and the client's 14
files, one 304 each, in three waves (config, then the files, then main.py): 60-150 ms of a
MicroPython page's reload in its resource timing (an end-to-end gain was lost in the noise of a
loaded machine; docs/startup.md has the A/B). Now a file the page names is at
`v/<digest>/<its path>`, cached for a year as immutable (a changed file gets a new digest, so a
new URL), and index.html itself, always revalidated, carries the digests. The configs are
inlined as JSON (PyScript takes a config attribute that is JSON text), which saves the config's
round trip between PyScript's start and the interpreter's, and lets the page preload every
client file at once instead of after the interpreter is up.

The Pyodide config's wheel (`"./client/<wheel>" = "./*"`) can be written into the page as the
wheel's files one by one (WHEEL_FILES, FILE_BY_FILE), preloaded with the rest, instead of the
zip PyScript unpacks in Python (Pyodide's unpackArchive). In the page that step went from
78-123 ms warm and 146-265 ms cold to 19 and 47 ms (`./dev bench phases`, load 6-16), but end to
end, on a quiet machine, the 26 requests cost more than the unzip saves (docs/startup.md has the
A/Bs): the page names the wheel.

pyscript.toml and pyscript-pyodide.toml stay the configs' source (and are still served as they
are, for pages of your own); the runtime is already under versioned URLs (server/static.py).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import re
import tomllib
import zipfile
from pathlib import Path

from . import snapshot, vendor
from .wheel import MPY_URL_PATH, Wheel

HASHED_PREFIX = "v/"  # + digest + "/" + the file's path from the page
DIGEST_CHARS = 16  # of a sha256: 64 bits, no collision among a page's files
CONFIGS = ("pyscript.toml", "pyscript-pyodide.toml")
REFERENCE = re.compile(r"""(["'])\./([^"'\s]+)\1""")  # "./main.py", href='./assets/x.css'
# The client wheel's files one by one (its sources, setup's bytecode, the worklets), under this
# folder + their path in the wheel: a config that unpacks the wheel (`"./client/<wheel>" =
# "./*"`, pyscript-pyodide.toml) is served listing these instead (see the docstring).
WHEEL_FILES = "client/py/"
# True: the Pyodide config names the wheel's files one by one instead of the wheel. Off: a
# quiet A/B (`./dev bench start_ab --variants wheel`, 8 runs, load 1.4-2.7) read the 26
# preloaded requests 270 ms slower cold than PyScript unzipping the wheel (2219 against 1949
# ms to connected) and no faster warm (926 against 927 ms).
FILE_BY_FILE = False


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:DIGEST_CHARS]


class PageFiles:
    """The files the page names, by their path from the page (`main.py`, `assets/style.css`,
    `client/mpy/layercode_client/client.mpy`, the client wheel), each with its hashed URL."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.digests = {path: digest_of(data) for path, data in files.items()}

    def url(self, path: str) -> str:
        """The hashed URL of `path`, relative to the page (no leading `./`)."""
        return f"{HASHED_PREFIX}{self.digests[path]}/{path}"

    def get(self, path: str) -> bytes | None:
        return self.files.get(path)


def collect(root: Path, wheel: Wheel, mpy_files: dict[str, bytes]) -> PageFiles:
    """main.py and the assets as they are on disk now, and the client as the server built it."""
    files = {"main.py": (root / "main.py").read_bytes()}
    for path in sorted((root / "assets").rglob("*")):
        if path.is_file():
            files[path.relative_to(root).as_posix()] = path.read_bytes()
    files[f"client/{wheel.filename}"] = wheel.data
    for name, data in wheel_members(wheel.data).items():
        files[f"{WHEEL_FILES}{name}"] = data
    for name, data in mpy_files.items():
        files[f"{MPY_URL_PATH.strip('/')}/{name}"] = data
    return PageFiles(files)


def fingerprint(page: str, files: PageFiles, root: Path) -> str:
    """`page` with each `"./<path>"` of a page file pointing at its hashed URL, and each
    `"./pyscript*.toml"` replaced by that config's JSON text (its files' URLs hashed too)."""

    def hashed(match: re.Match) -> str:
        quote, path = match.groups()
        if path in CONFIGS:
            return json.dumps(config_json(root / path, files)).replace("<", "\\u003c")
        if files.get(path) is None:
            return match.group(0)  # the runtime (versioned already) or the page's own name
        return f"{quote}./{files.url(path)}{quote}"

    return REFERENCE.sub(hashed, page)


def config_json(path: Path, files: PageFiles) -> str:
    config = tomllib.loads(path.read_text())
    if "interpreter" in config and not config.get("packages"):
        # The snapshot's loader starts Pyodide before PyScript asks, so it cannot take the
        # packages a config names: such a page starts Pyodide itself (and installs them).
        config["interpreter"] = pyodide_interpreter(config["interpreter"])
    named = {}
    for url, target in config.get("files", {}).items():
        if (
            FILE_BY_FILE
            and target == "./*"
            and url.startswith("./client/")
            and url.endswith(".whl")
        ):
            for path in files.files:
                if path.startswith(WHEEL_FILES):
                    named[f"./{files.url(path)}"] = f"./{path.removeprefix(WHEEL_FILES)}"
        else:
            named[_hashed_reference(url, files)] = target
    config["files"] = named
    return json.dumps(config, separators=(",", ":"))


@functools.lru_cache(maxsize=2)
def wheel_members(wheel: bytes) -> dict[str, bytes]:
    """The files a wheel installs (not its `.dist-info` metadata), by their path in it."""
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        return {
            name: archive.read(name)
            for name in archive.namelist()
            if not name.split("/")[0].endswith(".dist-info") and not name.endswith("/")
        }


def pyodide_interpreter(interpreter: str) -> str:
    """The Pyodide page's `interpreter`: the loader of Pyodide's memory snapshot when setup made
    one (server/snapshot.py), else Pyodide itself as the config names it. Other interpreters
    are left as they are."""
    plain = f".{vendor.pyodide_url()}/pyodide.mjs"
    loader = snapshot.loader_name() if interpreter == plain else None
    return f".{vendor.pyodide_url()}/{loader}" if loader else interpreter


def _hashed_reference(url: str, files: PageFiles) -> str:
    path = url.removeprefix("./")
    if not url.startswith("./") or files.get(path) is None:
        raise ValueError(f"the config names {url!r}, which is not a file of the page")
    return f"./{files.url(path)}"
