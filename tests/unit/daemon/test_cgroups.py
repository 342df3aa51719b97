from __future__ import annotations

from pathlib import Path

import pytest

from virtkit.daemon import cgroups
from virtkit.daemon.cgroups import CgroupLimits, VmCgroup


@pytest.fixture
def v1_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for c in ("cpu", "memory", "cpuacct"):
        (tmp_path / c).mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712")
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", tmp_path)
    return tmp_path


@pytest.fixture
def v2_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids")
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", tmp_path)
    return tmp_path


def test_v1_writes_quota_and_memory_limit(v1_root: Path) -> None:
    assert cgroups.version() == 1
    g = VmCgroup("vm1", parent="vk")
    g.create(CgroupLimits(cpus=1.5, memory_bytes=768 << 20))
    assert (v1_root / "cpu/vk/vm1/cpu.cfs_quota_us").read_text() == "150000"
    assert (v1_root / "cpu/vk/vm1/cpu.cfs_period_us").read_text() == "100000"
    assert (v1_root / "memory/vk/vm1/memory.limit_in_bytes").read_text() == str(768 << 20)
    assert g.limits()["cpu.cfs_quota_us"] == "150000"


def test_v2_writes_cpu_max_and_memory_max(v2_root: Path) -> None:
    assert cgroups.version() == 2
    g = VmCgroup("vm1", parent="vk")
    g.create(CgroupLimits(cpus=0.25, memory_bytes=512 << 20))
    assert (v2_root / "vk/vm1/cpu.max").read_text() == "25000 100000"
    assert (v2_root / "vk/vm1/memory.max").read_text() == str(512 << 20)
    assert (v2_root / "vk/cgroup.subtree_control").read_text() == "+cpu +memory"


def test_no_cgroups_is_not_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", tmp_path)
    assert cgroups.version() is None
    g = VmCgroup("vm1")
    assert not g.available
    g.create(CgroupLimits(1, 1 << 30))  # a no-op
    assert g.limits() == {}


def test_host_hierarchy_is_detected() -> None:
    # this host mounts v1 controllers; a pure-v2 host reports 2; either way the probe must not fail
    assert cgroups.version() in (1, 2, None)
