"""The QEMU command line the engine builds, checked without starting QEMU."""

from __future__ import annotations

from pathlib import Path

import pytest

from virtkit.config.defaults import stable_mac
from virtkit.config.machine import BootSpec, DiskSpec, MachineSpec, NicSpec
from virtkit.engines.base import Technique
from virtkit.engines.qemu import QemuEngine
from virtkit.errors import ConfigError, HostError
from virtkit.host.probe import HostReport


def report(hardware: bool) -> HostReport:
    return HostReport(
        cpu_model="x",
        cpu_flags=frozenset({"svm"} if hardware else set()),
        kvm_device=True,
        kvm_api=12,
        kvm_modules=frozenset({"kvm", "kvm_amd"} if hardware else {"kvm", "kvm_pvm"}),
        qemu_binary="/usr/bin/qemu-system-x86_64",
        qemu_version="7.2",
        mem_available_mib=1000,
    )


def spec(**kw: object) -> MachineSpec:
    base: dict[str, object] = {"name": "vm1", "boot": BootSpec(kernel=Path("/k"), initrd=Path("/i"))}
    base.update(kw)
    return MachineSpec(**base)  # type: ignore[arg-type]


def test_tcg_on_pvm_host_and_agent_channel(tmp_path: Path) -> None:
    eng = QemuEngine(report=report(False))
    assert eng.availability().technique is Technique.BINARY_TRANSLATION
    argv = eng.command(spec(), tmp_path)
    assert "pc,accel=tcg" in argv
    joined = " ".join(argv)
    assert "name=org.qemu.guest_agent.0" in joined
    assert f"path={tmp_path / 'agent.sock'}" in joined
    assert "-initrd /i" in joined and "-kernel /k" in joined


def test_kvm_when_hardware_and_paravirt_switch(tmp_path: Path) -> None:
    eng = QemuEngine(report=report(True))
    assert eng.availability().technique is Technique.HARDWARE
    on = eng.command(spec(), tmp_path)
    off = eng.command(spec(paravirt=False), tmp_path)
    assert on[on.index("-cpu") + 1] == "host"
    assert "-kvmclock" in off[off.index("-cpu") + 1]


def test_forcing_kvm_on_pvm_host_is_refused() -> None:
    with pytest.raises(HostError, match="KVM-PVM"):
        QemuEngine(accel="kvm", report=report(False)).command(spec(), Path("/tmp"))


def test_disks_and_nics(tmp_path: Path) -> None:
    s = spec(
        disks=(DiskSpec(path=Path("/d.qcow2"), format="qcow2", readonly=True),),
        nics=(NicSpec(kind="user", forwards=(("tcp", 2222, 22),)), NicSpec(kind="tap", ifname="vk-vm1-1")),
    )
    joined = " ".join(QemuEngine(report=report(False)).command(s, tmp_path))
    assert "driver=qcow2,file=file0,node-name=disk0,read-only=on" in joined
    assert "hostfwd=tcp::2222-:22" in joined
    assert "tap,id=net1,ifname=vk-vm1-1,script=no,downscript=no" in joined
    assert f"mac={stable_mac('vm1', 1)}" in joined


def test_stable_mac_is_stable_and_local() -> None:
    assert stable_mac("a", 0) == stable_mac("a", 0) != stable_mac("a", 1)
    assert stable_mac("a", 0).startswith("52:54:00:")


def test_not_enough_memory_is_refused_before_start(tmp_path: Path) -> None:
    (tmp_path / "k").write_bytes(b"x")
    s = spec(boot=BootSpec(kernel=tmp_path / "k"), memory_mib=4096)
    with pytest.raises(HostError, match="not enough memory") as info:
        QemuEngine(report=report(False)).start(s, tmp_path / "wd")
    assert info.value.hint and "--memory" in info.value.hint
    assert not (tmp_path / "wd").exists()


def test_missing_kernel(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="kernel /k does not exist"):
        QemuEngine(report=report(False)).start(spec(), tmp_path / "wd")


def test_spec_rejects_bad_names_and_macs() -> None:
    with pytest.raises(ValueError, match="not a valid machine name"):
        spec(name="bad name;rm")
    with pytest.raises(ValueError, match="multicast"):
        NicSpec(kind="user", mac="01:00:5e:00:00:01")


def test_name_with_trailing_newline_is_refused() -> None:
    with pytest.raises(ValueError, match="not a valid machine name"):
        spec(name="vm1\n")
