"""The client's bytecode for the Pyodide page (server/pyc.py): only where it matches the source."""

from __future__ import annotations

import zipfile
from io import BytesIO

from server import pyc
from server.wheel import build_wheel


def test_bytecode_is_offered_only_for_the_sources_it_was_made_from(tmp_path):
    made = b"x = 1\n"
    (tmp_path / f"{pyc.digest(made)}.cpython-314.pyc").write_bytes(b"bytecode of x = 1")
    entries = pyc.bytecode_for(
        [("pkg/a.py", made), ("pkg/b.py", b"x = 2\n"), ("pkg/w/p.js", made)], tmp_path
    )
    # b.py changed since setup compiled it (no bytecode for its digest): it is left out, and
    # the page compiles its source, as it does without any bytecode.
    assert entries == {"pkg/__pycache__/a.cpython-314.pyc": b"bytecode of x = 1"}


def test_the_wheel_carries_setups_bytecode_beside_the_sources():
    names = zipfile.ZipFile(BytesIO(build_wheel().data)).namelist()
    sources = [n for n in names if n.startswith("layercode_client/") and n.endswith(".py")]
    compiled = [n for n in names if "/__pycache__/" in n]
    if not pyc.cache_folder().is_dir():
        assert compiled == []
        return
    for source in sources:
        folder, _, module = source.rpartition("/")
        assert any(n.startswith(f"{folder}/__pycache__/{module[:-3]}.") for n in compiled), source
