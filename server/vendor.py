"""Vendor the browser runtime (PyScript, MicroPython, Pyodide, micropip) into `.vendor/`.

The page must never load anything from a CDN, so setup fetches the pinned npm tarballs from the
npm registry, checks each against the integrity the registry published (pinned below), and
unpacks it into a versioned folder that the server serves with long-lived cache headers. The npm
`pyodide` package lacks micropip's wheel: it comes from PyPI (hash pinned) and its real sha256
is written into Pyodide's lock file, or the page would hang on an SRI failure.

Run as `python -m server.vendor`; a second run on a ready machine does nothing.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from .files import write_whole

ROOT = Path(__file__).resolve().parent.parent
VENDOR_DIR = ROOT / ".vendor"


@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    integrity: str  # the registry's published `dist.integrity`
    subdir: str  # the folder of the tarball to serve ("package/dist" for PyScript)
    folder: str  # where it lands under .vendor/

    @property
    def target(self) -> Path:
        return VENDOR_DIR / self.folder / self.version


PYSCRIPT = NpmPackage(
    name="@pyscript/core",
    version="0.7.31",
    integrity="sha512-GqM1aonc1N4RTkNZ1zJ8jJk8+i2cqeztZslPsAiQtn+wHHkUX9Z1FgIg4HjCvhBylB68UKmbTVTzOobpgPIMVQ==",
    subdir="package/dist",
    folder="pyscript",
)
PYODIDE = NpmPackage(
    name="pyodide",
    version="314.0.7",
    integrity="sha512-0YvXxEhfEdpLfb/XkM2BFAeMROq0iMUX2bzzH9pOttyMcWkwq+HbE5uyuGD82LN7y2q+SNvi/6V5JEsOlD2R1A==",
    subdir="package",
    folder="pyodide",
)
# MicroPython for PyScript's `mpy` pages: the demo page's default interpreter (starts in a tenth
# of Pyodide's time) and the engine of the client's MicroPython checks (tests/micropython/).
# 1.28.0-6 is the build PyScript 0.7.31's core names as its default (a pre-release on the
# registry, whose `latest` is 1.27.0). Both pass the client's checks under Node and answered
# every probe of what the client uses alike; 1.28.0-6 is pinned because it is the build
# PyScript 0.7.31 was released and tested against (the page runs on it in the browser tests).
# The package also ships variants (settrace, ulab) the page never loads: they are not kept.
MICROPYTHON = NpmPackage(
    name="@micropython/micropython-webassembly-pyscript",
    version="1.28.0-6",
    integrity="sha512-eRJw+jOhFPoEClHRI8RmzIBjORpOhVdDFcdrNYHUc0U+EwchuD5cYIfmgvj3RWim7vBnjBK8mYxMBBVduOo8Lw==",
    subdir="package",
    folder="micropython",
)
MICROPYTHON_UNUSED = ("micropython-settrace.wasm", "micropython-settrace-ulab.wasm",
                      "micropython-ulab.wasm")  # fmt: skip
# The official JS SDK: not used by our page; the compatibility test and bench/client.py run it.
OFFICIAL_SDK = NpmPackage(
    name="@layercode/js-sdk",
    version="2.8.10",
    integrity="sha512-wq0AOi1xtcp78Le7t4V2oi+9e17vscfN+AoJqEv6PJ9JcLHziUt6aujoauf6/2sZIdHCfQRabO79Zxli1gZiGg==",
    subdir="package/dist",
    folder="official-sdk",
)
# What the page loads (served precompressed, exported); the official SDK is for the benches.
PAGE_RUNTIMES = (PYSCRIPT, MICROPYTHON, PYODIDE)
MICROPIP_VERSION = "0.11.1"
MICROPIP_SHA256 = "768de165adb8e66906039d8fec4127a57f522dfdf8e6fbff877a4616941ecfd3"  # PyPI's
MICROPIP_PYTHON = "3.14"  # the Python of the pinned Pyodide

# Files worth precompressing: text and wasm compress 3-5x; zips and wheels do not.
COMPRESSIBLE = {".js", ".mjs", ".wasm", ".json", ".css", ".html", ".zip"}
MIN_GZIP_SAVING = 0.10
# Beside each `.gz`, a `.zst` (served to browsers that accept zstd: Chromium since 123). The
# HTTP cache keeps a response as it came, so a warm load decodes the runtime again: for the
# Pyodide page 25 MB (its wasm and the snapshot), which zstd decodes about 5x faster than gzip
# inflates (docs/startup.md has the figures). Level 19, made once by setup; a
# window of at most 8 MB, the most HTTP's zstd coding asks a browser to hold (RFC 9659).
ZSTD_LEVEL = 19
ZSTD_WINDOW_LOG = 23
# An earlier setup's full Pyodide snapshot (30 MB), which the page never loads (server/snapshot.py)
FULL_SNAPSHOT = "snapshot-[0-9a-f]*"
DONE_MARKER = ".complete"


def pyscript_url() -> str:
    return f"/runtime/{PYSCRIPT.folder}/{PYSCRIPT.version}"


def pyodide_url() -> str:
    return f"/runtime/{PYODIDE.folder}/{PYODIDE.version}"


def micropython_url() -> str:
    return f"/runtime/{MICROPYTHON.folder}/{MICROPYTHON.version}"


def log(message: str) -> None:
    print(f"[vendor] {message}", file=sys.stderr, flush=True)


def sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def is_vendored() -> bool:
    """True when setup has put the runtimes in place."""
    return all((p.target / DONE_MARKER).is_file() for p in (PYSCRIPT, PYODIDE, MICROPYTHON))


def is_done(target: Path, stamp: str) -> bool:
    marker = target / DONE_MARKER
    return marker.is_file() and marker.read_text() == stamp


def npm_pack(package: NpmPackage, workdir: Path) -> Path:
    """Download the tarball through npm (its registry and proxy settings apply)."""
    result = subprocess.run(
        ["npm", "pack", f"{package.name}@{package.version}", "--json", "--silent"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(
            f"npm could not fetch {package.name}@{package.version}: {result.stderr.strip()}"
        )
    filename = json.loads(result.stdout)[0]["filename"]
    return workdir / filename


def vendor_npm(package: NpmPackage) -> None:
    """Fetch, verify and unpack one package into its versioned folder."""
    log(f"fetching {package.name}@{package.version} from the npm registry")
    with tempfile.TemporaryDirectory() as tmp:
        tarball = npm_pack(package, Path(tmp))
        actual = sri(tarball.read_bytes())
        if actual != package.integrity:
            raise SystemExit(
                f"{package.name}@{package.version}: tarball integrity {actual} does not match "
                f"the registry's {package.integrity}; refusing to use it"
            )
        unpacked = Path(tmp) / "unpacked"
        with tarfile.open(tarball) as tar:
            tar.extractall(unpacked, filter="data")
        staging = package.target.with_name(package.target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(unpacked / package.subdir, staging)
        shutil.rmtree(package.target, ignore_errors=True)
        staging.rename(package.target)


def fetch_micropip(target: Path) -> Path:
    """Download micropip's wheel from PyPI, pinned by hash."""
    wheel = target / f"micropip-{MICROPIP_VERSION}-py3-none-any.whl"
    if wheel.is_file() and hashlib.sha256(wheel.read_bytes()).hexdigest() == MICROPIP_SHA256:
        return wheel
    log(f"fetching micropip {MICROPIP_VERSION} from PyPI")
    with tempfile.TemporaryDirectory() as tmp:
        requirement = Path(tmp) / "requirements.txt"
        requirement.write_text(f"micropip=={MICROPIP_VERSION} --hash=sha256:{MICROPIP_SHA256}\n")
        subprocess.run(
            [
                sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                "--only-binary=:all:", "--python-version", MICROPIP_PYTHON,
                "--require-hashes", "-r", str(requirement), "-d", tmp,
            ],
            check=True,
        )  # fmt: skip
        shutil.copy(Path(tmp) / wheel.name, wheel)
    return wheel


def fix_micropip_hash(pyodide_dir: Path, wheel: Path) -> None:
    """Point Pyodide's lock file at the wheel we serve (its own hash differs from PyPI's)."""
    lock_path = pyodide_dir / "pyodide-lock.json"
    lock = json.loads(lock_path.read_text())
    entry = lock["packages"]["micropip"]
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if entry["file_name"] != wheel.name:
        raise SystemExit(
            f"Pyodide {PYODIDE.version} expects {entry['file_name']}, not {wheel.name}: "
            "update MICROPIP_VERSION in server/vendor.py"
        )
    if entry["sha256"] != digest:
        entry["sha256"] = digest
        lock_path.write_text(json.dumps(lock, separators=(",", ":")))


def precompress(folder: Path) -> None:
    """Write `.gz` beside each file where gzip pays, so serving costs no CPU per request."""
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix not in COMPRESSIBLE:
            continue
        data = path.read_bytes()
        packed = gzip.compress(data, compresslevel=9, mtime=0)
        if len(packed) <= len(data) * (1 - MIN_GZIP_SAVING):
            path.with_name(path.name + ".gz").write_bytes(packed)


def zstd_compress(data: bytes) -> bytes:
    import zstandard

    params = zstandard.ZstdCompressionParameters.from_level(
        ZSTD_LEVEL, window_log=ZSTD_WINDOW_LOG, source_size=len(data)
    )
    return zstandard.ZstdCompressor(compression_params=params).compress(data)


def add_zstd(folder: Path) -> None:
    """Write a `.zst` beside each `.gz` in `folder` (where gzip pays, zstd does too) that has
    none yet: folders vendored before zstd get theirs on the next setup."""
    for gzipped in sorted(folder.rglob("*.gz")):
        source, packed = gzipped.with_suffix(""), gzipped.with_suffix(".zst")
        if packed.is_file() or not source.is_file() or fnmatch(source.name, FULL_SNAPSHOT):
            continue
        log(f"compressing {source.name} with zstd (once)")
        write_whole(packed, zstd_compress(source.read_bytes()))


def add_zstd_to_runtimes(root: Path = VENDOR_DIR) -> None:
    """`add_zstd` on each runtime the page loads, vendored under `root` (VENDOR_DIR, or a
    copy of it)."""
    for package in PAGE_RUNTIMES:
        add_zstd(root / package.target.relative_to(VENDOR_DIR))


def main() -> None:
    VENDOR_DIR.mkdir(exist_ok=True)
    changed = False
    for package in (*PAGE_RUNTIMES, OFFICIAL_SDK):
        stamp = package.integrity
        if package is PYODIDE:
            stamp += f"+micropip-{MICROPIP_SHA256}"
        if is_done(package.target, stamp):
            continue
        vendor_npm(package)
        if package is PYODIDE:
            wheel = fetch_micropip(package.target)
            fix_micropip_hash(package.target, wheel)
        if package is MICROPYTHON:
            for name in MICROPYTHON_UNUSED:
                (package.target / name).unlink(missing_ok=True)
        # Source maps would only waste disk and bandwidth: nothing here debugs minified JS.
        for source_map in package.target.rglob("*.map"):
            source_map.unlink()
        if package in PAGE_RUNTIMES:
            precompress(package.target)
        (package.target / DONE_MARKER).write_text(stamp)
        changed = True
    add_zstd_to_runtimes()
    log("runtime vendored" if changed else "runtime already in place")


if __name__ == "__main__":
    main()
