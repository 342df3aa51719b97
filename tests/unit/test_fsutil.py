from __future__ import annotations

import stat
from pathlib import Path

import pytest

from virtkit.fsutil import write_atomic


def test_write_atomic_leaves_no_temp_and_is_readable(tmp_path: Path) -> None:
    p = tmp_path / "d" / "f.json"
    write_atomic(p, "x")
    write_atomic(p, b"y")
    assert p.read_text() == "y" and [q.name for q in p.parent.iterdir()] == ["f.json"]
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    write_atomic(p, "z", mode=0o600)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600


def test_a_failed_write_keeps_the_old_file_and_removes_the_temp(tmp_path: Path) -> None:
    p = tmp_path / "f"
    write_atomic(p, "old")
    with pytest.raises(TypeError):
        write_atomic(p, 42)  # type: ignore[arg-type]
    assert p.read_text() == "old" and [q.name for q in tmp_path.iterdir()] == ["f"]
