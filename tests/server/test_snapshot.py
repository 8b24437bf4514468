"""The Pyodide snapshot's files (server/snapshot.py): stored without its empty pages, rebuilt
exactly, and written by setup from what it has (no Chromium needed to change the form)."""

from __future__ import annotations

import gzip
import os

import zstandard

from server import snapshot, vendor


def memory_with_holes() -> bytes:
    """A snapshot-like memory: data, empty pages, a partly empty page, data at the very end."""
    page = snapshot.SPARSE_PAGE
    return (
        os.urandom(page * 3)
        + bytes(page * 5)
        + b"\x01" + bytes(page - 1)  # one byte set: the page is kept whole
        + bytes(page * 2)
        + os.urandom(page // 2)  # a short last page
    )  # fmt: skip


def test_the_sparse_form_leaves_out_only_empty_pages_and_expands_to_the_same_memory():
    memory = memory_with_holes()
    stored = snapshot.sparse(memory)
    page = snapshot.SPARSE_PAGE
    runs_and_header = 12 + 8 * 3
    assert len(stored) == runs_and_header + page * 3 + page + page // 2
    assert snapshot.expand(stored) == memory
    assert snapshot.expand(snapshot.sparse(bytes(page * 4))) == bytes(page * 4)


def test_setup_writes_the_sparse_snapshot_and_its_loader_from_an_earlier_full_one(
    tmp_path, monkeypatch
):
    """A setup that kept the full snapshot (before the sparse form) is converted without
    starting Chromium; running setup again changes nothing; a new loader is a new name."""
    folder = tmp_path / "pyodide" / vendor.PYODIDE.version
    folder.mkdir(parents=True)
    (folder / vendor.DONE_MARKER).write_text("done")
    monkeypatch.setattr(vendor, "VENDOR_DIR", tmp_path)
    monkeypatch.setattr(snapshot, "CHROMIUM", str(tmp_path / "no-chromium"))
    memory = memory_with_holes()
    (folder / "snapshot-0123456789abcdef.bin").write_bytes(memory)

    snapshot.main()
    loader = snapshot.loader_name(folder)
    assert loader and loader.startswith(snapshot.PREFIX)
    name = loader.removesuffix(".mjs")
    stored = (folder / f"{name}.bin").read_bytes()
    assert snapshot.expand(stored) == memory
    assert gzip.decompress((folder / f"{name}.bin.gz").read_bytes()) == stored
    assert (
        zstandard.ZstdDecompressor().decompress((folder / f"{name}.bin.zst").read_bytes()) == stored
    )
    code = (folder / loader).read_text()
    assert f'"./{name}.bin"' in code and f'layercodePyodideSnapshot = "{name}"' in code

    snapshot.main()
    assert sorted(p.name for p in folder.glob(snapshot.PREFIX + "*")) == [
        f"{name}.bin", f"{name}.bin.gz", f"{name}.bin.zst", f"{name}.mjs"
    ]  # fmt: skip

    (folder / "snapshot-0123456789abcdef.bin").unlink()  # only the sparse one is left
    monkeypatch.setattr(snapshot, "LOADER", snapshot.LOADER + "// changed\n")
    snapshot.main()
    renamed = snapshot.loader_name(folder)
    assert renamed != loader and (folder / renamed).read_text().endswith("// changed\n")
    assert snapshot.expand((folder / renamed).with_suffix(".bin").read_bytes()) == memory
    assert not (folder / loader).exists()
