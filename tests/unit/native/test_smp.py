"""SMP on the fake hypervisor: --vcpus N gives N vCPU threads with distinct APIC IDs and a MADT naming them;
pause and resume stop and start every one of them."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest
from guestkernels import make_bzimage

from virtkit.arch.x86_64 import acpi
from virtkit.hypervisor.base import IoOut
from virtkit.hypervisor.fake import FakeHypervisor
from virtkit.machine.builder import build
from virtkit.machine.config import VmmConfig
from virtkit.machine.vcpu import VcpuState


@pytest.fixture
def bzimage(tmp_path: Path) -> Path:
    path = tmp_path / "bzImage"
    path.write_bytes(make_bzimage(b"\xf4" * 0x400, init_size=0x10000))
    return path


def wait_until(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.005)


def test_vcpus_get_threads_apic_ids_and_a_madt(bzimage: Path) -> None:
    hv = FakeHypervisor()
    vmm = build(VmmConfig(bzimage, memory_mib=64, vcpus=3), hv, lambda b: None, mem_available_mib=1024)
    try:
        vm = hv.vms[0]
        assert [v.index for v in vm.vcpus] == [0, 1, 2] and len(vmm.threads) == 3
        leaf1 = [next(e for e in v.cpuid if e.function == 1) for v in vm.vcpus]
        assert [e.ebx >> 24 for e in leaf1] == [0, 1, 2]
        xsdt = vmm.memory.read(acpi.XSDT_ADDRESS, 36 + 16)
        tables = {vmm.memory.read(a, 4): a for a in struct.unpack_from("<2Q", xsdt, 36)}
        madt = vmm.memory.read(tables[b"APIC"], 44 + 8 * 3)
        entries = [struct.unpack_from("<BBBBI", madt, 44 + 8 * i) for i in range(3)]
        assert entries == [(0, 8, i, i, 1) for i in range(3)]  # local APIC, uid i, APIC ID i, enabled
    finally:
        vmm.close()


def test_pause_and_resume_stop_and_start_every_vcpu(bzimage: Path) -> None:
    hv = FakeHypervisor()
    vmm = build(VmmConfig(bzimage, memory_mib=64, vcpus=2), hv, lambda b: None, mem_available_mib=1024)
    try:
        for v in hv.vms[0].vcpus:
            v.end = IoOut(0x80, 1, b"\0")  # each vCPU spins on port 0x80 until stopped
        vmm.start()
        wait_until(lambda: vmm.dispatcher.ports[0x80] > 100)
        assert vmm.pause()
        assert vmm.paused and all(t.state is VcpuState.PAUSED for t in vmm.threads)
        frozen = vmm.dispatcher.ports[0x80]
        time.sleep(0.05)
        assert vmm.dispatcher.ports[0x80] == frozen  # nobody runs while paused
        vmm.resume()
        wait_until(lambda: all(t.state is VcpuState.RUNNING for t in vmm.threads))
        wait_until(lambda: vmm.dispatcher.ports[0x80] > frozen + 100)
        outcome = vmm.stop()
        assert outcome is not None and outcome.kind == "stopped"
        assert all(t.state is VcpuState.FINISHED for t in vmm.threads)
    finally:
        vmm.close()
