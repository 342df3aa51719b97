"""A KVM VM file descriptor: memory slots, the in-kernel irqchip and PIT, IRQ lines, vCPUs."""

from __future__ import annotations

import fcntl
import os
import signal
import struct

from virtkit.hypervisor.base import HypervisorError
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

    def signal_msi(self, address: int, data: int) -> None:
        msi = _abi.Msi(address_lo=address & 0xFFFFFFFF, address_hi=address >> 32, data=data)
        ioctl_buf(self._fd, _abi.KVM_SIGNAL_MSI, msi, "KVM_SIGNAL_MSI")

    def set_ioeventfd(self, address: int, length: int, fd: int, assign: bool = True) -> None:
        flags = 0 if assign else _abi.KVM_IOEVENTFD_FLAG_DEASSIGN
        event = _abi.IoEventFd(addr=address, len=length, fd=fd, flags=flags)
        ioctl_buf(self._fd, _abi.KVM_IOEVENTFD, event, "KVM_IOEVENTFD")

    def set_msi_routes(self, routes: dict[int, tuple[int, int]]) -> None:
        """Route each GSI in ``routes`` to an MSI (address, data). KVM_SET_GSI_ROUTING replaces the whole
        table, so the in-kernel irqchip's default routes (GSI 0-15 to PIC and IOAPIC, 16-23 to the IOAPIC)
        go in first, as KVM sets them up itself."""
        entries = bytearray()
        for gsi in range(24):
            entries += struct.pack("<IIII", gsi, _abi.KVM_IRQ_ROUTING_IRQCHIP, 0, 0)
            entries += struct.pack("<II24x", _abi.KVM_IRQCHIP_IOAPIC, gsi)
            if gsi < 16:
                chip = _abi.KVM_IRQCHIP_PIC_MASTER if gsi < 8 else _abi.KVM_IRQCHIP_PIC_SLAVE
                entries += struct.pack("<IIII", gsi, _abi.KVM_IRQ_ROUTING_IRQCHIP, 0, 0)
                entries += struct.pack("<II24x", chip, gsi % 8)
        for gsi, (address, data) in sorted(routes.items()):
            entries += struct.pack("<IIII", gsi, _abi.KVM_IRQ_ROUTING_MSI, 0, 0)
            entries += struct.pack("<III20x", address & 0xFFFFFFFF, address >> 32, data)
        count = len(entries) // _abi.ROUTING_ENTRY_SIZE
        buf = bytearray(struct.pack("<II", count, 0)) + entries
        try:
            fcntl.ioctl(self._fd, _abi.KVM_SET_GSI_ROUTING, buf, True)
        except OSError as e:
            raise HypervisorError(f"KVM_SET_GSI_ROUTING failed: {e.strerror}") from e

    def set_irqfd(self, gsi: int, fd: int, assign: bool = True) -> None:
        flags = 0 if assign else _abi.KVM_IRQFD_FLAG_DEASSIGN
        ioctl_buf(self._fd, _abi.KVM_IRQFD, _abi.IrqFd(fd=fd, gsi=gsi, flags=flags), "KVM_IRQFD")

    def create_vcpu(self, index: int) -> KvmVcpu:
        fd = ioctl_int(self._fd, _abi.KVM_CREATE_VCPU, index, "KVM_CREATE_VCPU")
        return KvmVcpu(fd, index, self._vcpu_mmap_size, self._kick_signal)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
