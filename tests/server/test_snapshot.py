"""The Pyodide snapshot's files (server/snapshot.py): stored without its empty pages, rebuilt
exactly, and written by setup from what it has (no Chromium needed to change the form)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

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


def vendored_pyodide(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "pyodide" / vendor.PYODIDE.version
    folder.mkdir(parents=True)
    (folder / vendor.DONE_MARKER).write_text("done")
    monkeypatch.setattr(vendor, "VENDOR_DIR", tmp_path)
    return folder


def chromium(tmp_path, monkeypatch, memory: bytes | None) -> list[bytes]:
    """Chromium for setup when `memory` is given (it makes that snapshot), none otherwise;
    the list of the snapshots it made."""
    made: list[bytes] = []
    if memory is None:
        monkeypatch.setattr(snapshot, "CHROMIUM", str(tmp_path / "no-chromium"))
        return made
    (tmp_path / "chromium").write_text("")
    monkeypatch.setattr(snapshot, "CHROMIUM", str(tmp_path / "chromium"))
    monkeypatch.setattr(snapshot, "make_snapshot", lambda folder: made.append(memory) or memory)
    return made


def test_setup_writes_the_sparse_snapshot_and_its_loader_and_reuses_it_for_a_new_loader(
    tmp_path, monkeypatch
):
    """Setup makes the snapshot in Chromium once and writes it sparse with its loader, which
    says what the snapshot holds; running setup again changes nothing; a new loader is a new
    name, written from the snapshot already there (no Chromium needed)."""
    folder = vendored_pyodide(tmp_path, monkeypatch)
    memory = memory_with_holes()
    made = chromium(tmp_path, monkeypatch, memory)

    snapshot.main()
    loader = snapshot.loader_name(folder)
    assert loader and loader.startswith(snapshot.PREFIX) and len(made) == 1
    name = loader.removesuffix(".mjs")
    stored = (folder / f"{name}.bin").read_bytes()
    assert snapshot.expand(stored) == memory
    assert gzip.decompress((folder / f"{name}.bin.gz").read_bytes()) == stored
    assert (
        zstandard.ZstdDecompressor().decompress((folder / f"{name}.bin.zst").read_bytes()) == stored
    )
    code = (folder / loader).read_text()
    assert f'"./{name}.bin"' in code and f'layercodePyodideSnapshot = "{name}"' in code
    assert snapshot.RECIPE in code and "import html" in snapshot.RECIPE

    snapshot.main()
    assert len(made) == 1
    assert sorted(p.name for p in folder.glob(snapshot.PREFIX + "*")) == [
        f"{name}.bin", f"{name}.bin.gz", f"{name}.bin.zst", f"{name}.mjs"
    ]  # fmt: skip

    chromium(tmp_path, monkeypatch, None)
    monkeypatch.setattr(snapshot, "LOADER", snapshot.LOADER + "// changed\n")
    snapshot.main()
    renamed = snapshot.loader_name(folder)
    assert renamed != loader and (folder / renamed).read_text().endswith("// changed\n")
    assert snapshot.expand((folder / renamed).with_suffix(".bin").read_bytes()) == memory
    assert not (folder / loader).exists()


def test_a_snapshot_made_by_another_recipe_is_made_again(tmp_path, monkeypatch):
    """A snapshot an earlier setup made holding less (before the page's modules were imported
    into it) is made again in Chromium, not reused; with no Chromium it is kept (the page
    works with it, only slower)."""
    folder = vendored_pyodide(tmp_path, monkeypatch)
    old_memory, new_memory = memory_with_holes(), memory_with_holes()
    chromium(tmp_path, monkeypatch, old_memory)
    monkeypatch.setattr(snapshot, "RECIPE", "// Python in the snapshot: Pyodide's start-up")
    snapshot.main()
    old_loader = snapshot.loader_name(folder)
    monkeypatch.undo()
    folder = vendored_pyodide(tmp_path / "again", monkeypatch)
    for path in (tmp_path / "pyodide" / vendor.PYODIDE.version).glob(snapshot.PREFIX + "*"):
        (folder / path.name).write_bytes(path.read_bytes())

    chromium(tmp_path, monkeypatch, None)
    snapshot.main()
    assert snapshot.loader_name(folder) == old_loader

    made = chromium(tmp_path, monkeypatch, new_memory)
    snapshot.main()
    loader = snapshot.loader_name(folder)
    assert made == [new_memory] and loader != old_loader
    assert snapshot.RECIPE in (folder / loader).read_text()
    assert snapshot.expand((folder / loader).with_suffix(".bin").read_bytes()) == new_memory
