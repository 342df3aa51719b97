"""Disk inspection with the real qemu-img (fast, no guest)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from virtkit.errors import ConfigError
from virtkit.storage.disks import create_disk, inspect_disk

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img not installed")


def test_create_and_inspect(tmp_path: Path) -> None:
    q = create_disk(tmp_path / "a.qcow2", "16M", "qcow2")
    assert (q.format, q.virtual_size) == ("qcow2", 16 * 1024 * 1024)
    r = create_disk(tmp_path / "b.raw", "1M", "raw")
    assert r.format == "raw"


def test_corrupt_qcow2_is_named_with_fix(tmp_path: Path) -> None:
    disk = tmp_path / "bad.qcow2"
    create_disk(disk, "16M", "qcow2")
    data = bytearray(disk.read_bytes())
    data[4:8] = b"\x00\x00\x00\x63"  # impossible version
    disk.write_bytes(bytes(data))
    with pytest.raises(ConfigError) as info:
        inspect_disk(disk, "qcow2")
    assert "bad.qcow2" in info.value.message
    assert info.value.hint and "qemu-img check" in info.value.hint


def test_truncated_qcow2_l1_table(tmp_path: Path) -> None:
    disk = tmp_path / "cut.qcow2"
    create_disk(disk, "16M", "qcow2")
    disk.write_bytes(disk.read_bytes()[:300])
    with pytest.raises(ConfigError, match=r"cut\.qcow2"):
        inspect_disk(disk, "qcow2")


def test_missing_disk(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        inspect_disk(tmp_path / "none.raw")
