from __future__ import annotations

from pathlib import Path

import pytest
from guestkernels import make_bzimage

from virtkit.config.machine import BootSpec, DiskSpec, MachineSpec
from virtkit.engines.base import Technique
from virtkit.engines.native import NativeEngine, native_availability
from virtkit.errors import ConfigError, EngineError
from virtkit.host.probe import HostReport


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
def spec(tmp_path: Path) -> MachineSpec:
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(make_bzimage(b"\xf4" * 0x400))
    return MachineSpec(name="t", memory_mib=64, boot=BootSpec(kernel=kernel, cmdline="console=ttyS0"))


def test_vmm_command_line(spec: MachineSpec, tmp_path: Path) -> None:
    cmd = NativeEngine(report=report()).command(spec.model_copy(update={"paravirt": False}), tmp_path)
    assert cmd[1:3] == ["-m", "virtkit.engines.native_main"]
    assert cmd[cmd.index("--memory-mib") + 1] == "64"
    assert cmd[cmd.index("--control") + 1] == str(tmp_path / "control.sock")
    assert "--no-paravirt" in cmd and "--initrd" not in cmd


def test_disks_are_refused_until_virtio(spec: MachineSpec, tmp_path: Path) -> None:
    with_disk = spec.model_copy(update={"disks": (DiskSpec(path=tmp_path / "d.img"),)})
    with pytest.raises(ConfigError, match="no disks"):
        NativeEngine(report=report()).start(with_disk, tmp_path / "run")


def test_bad_input_is_refused_before_a_process_starts(spec: MachineSpec, tmp_path: Path) -> None:
    not_kernel = tmp_path / "notes.txt"
    not_kernel.write_text("hello")
    bad = spec.model_copy(update={"boot": BootSpec(kernel=not_kernel)})
    with pytest.raises(ConfigError, match="not a kernel"):
        NativeEngine(report=report()).start(bad, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_no_agent_in_part_one(spec: MachineSpec, tmp_path: Path) -> None:
    from virtkit.engines.native import NativeMachine

    machine = NativeMachine.__new__(NativeMachine)
    with pytest.raises(EngineError, match="no agent yet"):
        machine.agent()
