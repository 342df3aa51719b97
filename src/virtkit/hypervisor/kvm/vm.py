"""A KVM VM file descriptor: memory slots, the in-kernel irqchip and PIT, IRQ lines, vCPUs."""

from __future__ import annotations

import os
import signal

from virtkit.hypervisor.kvm import _abi
from virtkit.hypervisor.kvm._ioctl import ioctl_buf, ioctl_int
from virtkit.hypervisor.kvm.vcpu import KvmVcpu

# Three pages KVM needs for the real-mode TSS on Intel, placed just below the 4 GiB MMIO hole's end
# (the same address QEMU and Firecracker use); harmless on AMD and PVM.
TSS_ADDRESS = 0xFFFBD000


class KvmVm:
    def __init__(self, fd: int, vcpu_mmap_size: int, kick_signal: signal.Signals) -> None:
        self._fd = fd
        self._vcpu_mmap_size = vcpu_mmap_size
        self._kick_signal = kick_signal
        self._irq = _abi.IrqLevel()
        ioctl_int(fd, _abi.KVM_SET_TSS_ADDR, TSS_ADDRESS, "KVM_SET_TSS_ADDR")

    def map_memory(self, slot: int, guest_address: int, size: int, host_address: int) -> None:
        region = _abi.UserspaceMemoryRegion(
            slot=slot, flags=0, guest_phys_addr=guest_address, memory_size=size, userspace_addr=host_address
        )
        ioctl_buf(self._fd, _abi.KVM_SET_USER_MEMORY_REGION, region, "KVM_SET_USER_MEMORY_REGION")

    def create_irqchip(self) -> None:
        ioctl_int(self._fd, _abi.KVM_CREATE_IRQCHIP, 0, "KVM_CREATE_IRQCHIP")

    def create_pit(self) -> None:
        ioctl_buf(self._fd, _abi.KVM_CREATE_PIT2, _abi.PitConfig(flags=_abi.KVM_PIT_SPEAKER_DUMMY), "KVM_CREATE_PIT2")

    def set_irq_line(self, irq: int, level: bool) -> None:
        line = _abi.IrqLevel(irq=irq, level=int(level))
        ioctl_buf(self._fd, _abi.KVM_IRQ_LINE, line, "KVM_IRQ_LINE")

    def create_vcpu(self, index: int) -> KvmVcpu:
        fd = ioctl_int(self._fd, _abi.KVM_CREATE_VCPU, index, "KVM_CREATE_VCPU")
        return KvmVcpu(fd, index, self._vcpu_mmap_size, self._kick_signal)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
