"""Files written whole or not at all (server/files.py): what setup and the server trust by
name is never a truncated file."""

from __future__ import annotations

import pytest

from server.files import whole, write_whole


def test_a_write_lands_under_its_name_only_when_complete(tmp_path):
    target = tmp_path / "model.bin"
    with whole(target) as partial:
        partial.write_bytes(b"half")
        assert not target.exists()  # nothing under the trusted name while it is written
    assert target.read_bytes() == b"half"
    assert list(tmp_path.iterdir()) == [target]


def test_a_failed_write_leaves_the_old_file_and_no_partial(tmp_path):
    target = tmp_path / "model.bin"
    write_whole(target, b"old")
    with pytest.raises(RuntimeError), whole(target) as partial:
        partial.write_bytes(b"trunc")
        raise RuntimeError("the writer crashed")
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]
