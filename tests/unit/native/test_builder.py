from __future__ import annotations

from pathlib import Path

import pytest
from guestkernels import make_bzimage, make_pvh_elf

from virtkit.arch.x86_64 import layout
from virtkit.errors import ConfigError, HostError
from virtkit.hypervisor.base import IoOut, SystemEvent
from virtkit.hypervisor.fake import FakeHypervisor
from virtkit.machine.builder import build, preflight
from virtkit.machine.config import VmmConfig
from virtkit.machine.console import ConsoleSink
from virtkit.machine.runner import Runner


@pytest.fixture
def bzimage(tmp_path: Path) -> Path:
    path = tmp_path / "bzImage"
    path.write_bytes(make_bzimage(b"\xf4" * 0x400, init_size=0x10000))
    return path


def test_build_follows_the_boot_sequence(bzimage: Path, tmp_path: Path) -> None:
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"cpio" * 1000)
    hv = FakeHypervisor()
    vmm = build(VmmConfig(bzimage, initrd, "console=ttyS0", 64), hv, lambda b: None, mem_available_mib=1024)
    vm = hv.vms[0]
    assert vm.irqchip and vm.pit
    assert vm.memory == [(0, 0, 64 << 20, vmm.memory.regions[0].host_address)]
    vcpu = vm.vcpus[0]
    assert vcpu.registers.rip == 0x100200 and vcpu.registers.rsi == layout.ZERO_PAGE
    assert vcpu.special_registers.efer & 0x500 == 0x500 and vcpu.special_registers.cs.l == 1
    assert vcpu.special_registers.cr3 == layout.PML4_START
    assert any(e.function == 0x40000000 for e in vcpu.cpuid)
    assert vcpu.fpu_reset
    assert vmm.pio.resolve(0x3F8) is not None and vmm.pio.resolve(0x64) is not None
    assert "pv_eoi" in vmm.paravirt_features
    vmm.close()
    assert vm.closed and vcpu.closed


def test_no_paravirt_hides_the_kvm_leaves(bzimage: Path) -> None:
    hv = FakeHypervisor()
    vmm = build(VmmConfig(bzimage, memory_mib=64, paravirt=False), hv, lambda b: None, mem_available_mib=1024)
    assert not [e for e in hv.vms[0].vcpus[0].cpuid if e.function >= 0x40000000 and e.function < 0x40000100]
    assert vmm.paravirt_features == ()
    vmm.close()


def test_pvh_kernel_enters_in_flat_32_bit_mode(tmp_path: Path) -> None:
    path = tmp_path / "vmlinux"
    path.write_bytes(make_pvh_elf(b"\xf4" * 16, entry=0x100008))
    hv = FakeHypervisor()
    vmm = build(VmmConfig(path, memory_mib=64), hv, lambda b: None, mem_available_mib=1024)
    vcpu = hv.vms[0].vcpus[0]
    assert vcpu.registers.rip == 0x100008 and vcpu.registers.rbx == layout.PVH_START_INFO
    sregs = vcpu.special_registers
    assert sregs.cr0 & 1 and not sregs.cr0 & 0x80000000 and sregs.efer == 0
    assert sregs.cs.db == 1 and sregs.cs.limit == 0xFFFFFFFF
    vmm.close()


def test_memory_beyond_what_the_host_has_is_refused(bzimage: Path) -> None:
    with pytest.raises(HostError, match="only 100 MiB available") as err:
        preflight(VmmConfig(bzimage, memory_mib=4096), mem_available_mib=100)
    assert err.value.hint


def test_more_than_one_vcpu_is_refused_for_now(bzimage: Path) -> None:
    with pytest.raises(ConfigError, match="1 vCPU"):
        preflight(VmmConfig(bzimage, memory_mib=64, vcpus=2), mem_available_mib=1024)


def test_initrd_larger_than_ram_is_refused_before_any_vm_exists(bzimage: Path, tmp_path: Path) -> None:
    initrd = tmp_path / "initrd"
    with initrd.open("wb") as f:
        f.truncate(80 << 20)
    hv = FakeHypervisor()
    with pytest.raises(ConfigError, match="does not fit"):
        build(VmmConfig(bzimage, initrd, memory_mib=64), hv, lambda b: None, mem_available_mib=1024)
    assert hv.vms == []


def test_runner_restarts_on_reset_and_ends_on_poweroff(bzimage: Path) -> None:
    hv = FakeHypervisor(
        scripts={0: [IoOut(0x3F8, 1, b"B"), IoOut(0x64, 1, b"\xfe")]},  # boot 1 resets through the i8042
        later_boots=[{0: [IoOut(0x3F8, 1, b"C"), SystemEvent("shutdown")]}],  # boot 2 powers off
    )
    console = ConsoleSink()
    out = bytearray()
    console.add_listener(out.extend)
    runner = Runner(VmmConfig(bzimage, memory_mib=64), lambda: hv, console, mem_available_mib=1024)
    outcome = runner.run()
    assert outcome.kind == "poweroff"
    assert runner.boots == 2 and bytes(out) == b"BC"
    assert runner.state == "shut off"
    assert all(vm.closed for vm in hv.vms)


def test_runner_ends_on_reset_when_asked(bzimage: Path) -> None:
    hv = FakeHypervisor(scripts={0: [IoOut(0x64, 1, b"\xfe")]})
    runner = Runner(VmmConfig(bzimage, memory_mib=64, on_reset="exit"), lambda: hv, ConsoleSink(), 1024)
    outcome = runner.run()
    assert (outcome.kind, outcome.reason, runner.boots) == ("reset", "i8042 reset", 1)


def test_a_failing_vcpu_setup_releases_everything(bzimage: Path) -> None:
    from virtkit.hypervisor.base import HypervisorError
    from virtkit.hypervisor.fake import FakeVcpu, FakeVm

    class NoCpuid(FakeVcpu):
        def set_cpuid(self, entries: object) -> None:
            raise HypervisorError("KVM_SET_CPUID2 failed: Invalid argument")

    class Vm(FakeVm):
        def create_vcpu(self, index: int) -> FakeVcpu:
            vcpu = NoCpuid(index)
            self.vcpus.append(vcpu)
            return vcpu

    class Hv(FakeHypervisor):
        def create_vm(self) -> FakeVm:
            vm = Vm()
            self.vms.append(vm)
            return vm

    hv = Hv()
    with pytest.raises(HypervisorError, match="SET_CPUID2"):
        build(VmmConfig(bzimage, memory_mib=64), hv, lambda b: None, mem_available_mib=1024)
    assert hv.vms[0].closed and hv.vms[0].vcpus[0].closed
