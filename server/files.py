"""Files written whole or not at all.

Setup and the server keep things on disk that later runs trust by their name alone (vendored
runtimes, compiled bytecode, the Pyodide snapshot, the recogniser's phrase model). Each is
written under `<name>.partial` and renamed last, so an interrupted write leaves no truncated
file under the trusted name.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def whole(target: Path) -> Iterator[Path]:
    """The path to write `target`'s content to (for writers that take a path, such as a
    native library); renamed to `target` when the block ends without an error, removed when
    it raises."""
    partial = target.with_name(target.name + ".partial")
    try:
        yield partial
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def write_whole(target: Path, data: bytes) -> None:
    """Write `data` to `target` whole or not at all."""
    with whole(target) as partial:
        partial.write_bytes(data)
