"""hcl.atomic_file: a reader sees the old file or the new one, never a part."""

from __future__ import annotations

import pytest

from hcl.atomic_file import atomic_write, atomic_write_text


def test_replaces_the_whole_file(tmp_path):
    path = tmp_path / "a.json"
    atomic_write_text(path, "old\n")
    atomic_write_text(path, "new\n")
    assert path.read_text() == "new\n"
    with atomic_write(path, "wb") as f:
        f.write(b"\x00bytes")
    assert path.read_bytes() == b"\x00bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"], "no temporary file is left"


def test_a_failure_mid_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "a.json"
    atomic_write_text(path, "old\n")
    with pytest.raises(RuntimeError, match="disk"):
        with atomic_write(path) as f:
            f.write("half of the new")
            raise RuntimeError("the disk is full")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"], "the temporary file is removed"


def test_appending_is_refused():
    with pytest.raises(ValueError, match="whole files"):
        with atomic_write("x", "a"):
            pass
