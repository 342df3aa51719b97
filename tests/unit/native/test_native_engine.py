from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from guestkernels import make_bzimage

from virtkit.engines.base import Technique
from virtkit.engines.native import NativeEngine, native_availability
from virtkit.errors import ConfigError
from virtkit.host.probe import HostReport
from virtkit.spec.machine import BootConfig, DiskConfig, MachineConfig
from virtkit.spec.resolve import guest_cmdline


def report(**kw: object) -> HostReport:
    base: dict[str, object] = dict(
        cpu_model="test", cpu_flags=frozenset(), kvm_device=True, kvm_api=12, kvm_modules=frozenset({"kvm"}),
        qemu_binary=None, qemu_version=None, mem_available_mib=4096,
    )  # fmt: skip
    base.update(kw)
    return HostReport(**base)  # type: ignore[arg-type]


def test_hardware_virtualization_runs_unmodified_guests() -> None:
    a = native_availability(report(cpu_flags=frozenset({"svm"}), kvm_modules=frozenset({"kvm", "kvm_amd"})))
    assert a.usable and a.technique is Technique.HARDWARE and "svm" in a.reason


def test_kvm_pvm_runs_only_pvm_guest_kernels_and_says_why() -> None:
    a = native_availability(report(kvm_modules=frozenset({"kvm", "kvm_pvm"})))
    assert not a.usable and a.technique is Technique.PVM
    assert "PVM" in a.reason and "VT-x/AMD-V" in a.reason


def test_no_kvm_means_no_native_engine() -> None:
    a = native_availability(report(kvm_device=False, kvm_api=None))
    assert not a.usable and a.technique is None and "/dev/kvm" in a.reason


@pytest.fixture
def spec(tmp_path: Path) -> MachineConfig:
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(make_bzimage(b"\xf4" * 0x400))
    return MachineConfig(name="t", memory_mib=64, boot=BootConfig(kernel=kernel, cmdline=guest_cmdline("t", "console=ttyS0")))


def vmm_document(cmd: list[str]) -> dict[str, Any]:
    """The one JSON document the VMM process is started with."""
    assert cmd[1:3] == ["-m", "virtkit.engines.native_main"] and len(cmd) == 4
    doc: dict[str, Any] = json.loads(Path(cmd[3]).read_text())
    return doc


def test_vmm_command_line(spec: MachineConfig, tmp_path: Path) -> None:
    cmd = NativeEngine(report=report()).command(dataclasses.replace(spec, paravirt=False), tmp_path)
    assert cmd[3] == str(tmp_path / "vmm.json")
    doc = vmm_document(cmd)
    assert doc["vmm"]["memory_mib"] == 64
    assert doc["control"] == str(tmp_path / "control.sock")
    assert doc["vmm"]["paravirt"] is False and doc["vmm"]["initrd"] is None
    assert doc["console"] == "none" and doc["console_log"] == str(tmp_path / "console.log")


def test_disks_are_refused_until_virtio(spec: MachineConfig, tmp_path: Path) -> None:
    with_disk = dataclasses.replace(spec, disks=(DiskConfig(path=tmp_path / "d.img"),))
    with pytest.raises(ConfigError, match="no disks"):
        NativeEngine(report=report()).start(with_disk, tmp_path / "run")


def test_bad_input_is_refused_before_a_process_starts(spec: MachineConfig, tmp_path: Path) -> None:
    not_kernel = tmp_path / "notes.txt"
    not_kernel.write_text("hello")
    bad = dataclasses.replace(spec, boot=BootConfig(kernel=not_kernel))
    with pytest.raises(ConfigError, match="not a kernel"):
        NativeEngine(report=report()).start(bad, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_agent_socket_vcpus_and_hostname_in_the_vmm_document(spec: MachineConfig, tmp_path: Path) -> None:
    doc = vmm_document(NativeEngine(report=report()).command(dataclasses.replace(spec, vcpus=2), tmp_path))
    assert doc["vmm"]["agent_socket"] == str(tmp_path / "agent.sock")
    assert doc["vmm"]["vcpus"] == 2
    # the engine passes the resolved command line on as it is
    assert doc["vmm"]["cmdline"] == "console=ttyS0 virtkit.hostname=t"
    no_agent = vmm_document(NativeEngine(report=report()).command(dataclasses.replace(spec, agent=False), tmp_path))
    assert no_agent["vmm"]["agent_socket"] is None
