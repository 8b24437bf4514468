"""The client's bytecode for the Pyodide page (server/pyc.py): only where it matches the source."""

from __future__ import annotations

import _imp
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


def test_the_wheels_bytecode_matches_the_sources_beside_it():
    """Whatever bytecode setup left (none, all, or some modules edited since), each .pyc in the
    wheel is a checked hash-based one (PEP 552) of the source the wheel carries."""
    wheel = zipfile.ZipFile(BytesIO(build_wheel().data))
    for name in wheel.namelist():
        if "/__pycache__/" not in name:
            continue
        folder, _, file = name.partition("/__pycache__/")
        source = wheel.read(f"{folder}/{file.split('.')[0]}.py")
        data = wheel.read(name)
        key = int.from_bytes(data[:4], "little")  # the magic number, as CPython keys the hash
        assert int.from_bytes(data[4:8], "little") == 0b11, name  # hash-based, checked
        assert data[8:16] == _imp.source_hash(key, source), name
