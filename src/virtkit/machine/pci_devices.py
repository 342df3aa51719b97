"""The builder's PCI step: the root bus with its host bridge on ports 0xCF8-0xCFF, the BAR window on the
MMIO bus, and each virtio device as a virtio-pci function with MSI-X (INTx as the fallback)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from virtkit.arch.x86_64 import aml
from virtkit.devices.bus import Bus
from virtkit.devices.pci.root import (
    CONFIG_ADDRESS_PORT,
    CONFIG_PORT_LENGTH,
    WINDOW_BASE,
    WINDOW_SIZE,
    PciRoot,
    PciWindow,
)
from virtkit.devices.trigger import IrqLine
from virtkit.hypervisor.base import HypervisorError, Vm
from virtkit.machine.notifier import Notifier
from virtkit.memory import GuestMemory
from virtkit.virtio.device import VirtioDevice
from virtkit.virtio.pci import BAR_SIZE, VirtioPci

log = logging.getLogger(__name__)

# INTx lines for PCI functions: ISA IRQs Linux leaves to PCI (QEMU's PIIX uses 10 and 11 the same way)
INTX_LINES = (10, 11)
SLOTS = range(1, 32)  # slot 0 is the host bridge


def intx_line(slot: int) -> int:
    """The GSI a slot's INTA# drives; the DSDT's _PRT says the same (see routing())."""
    return INTX_LINES[(slot - 1) % len(INTX_LINES)]


def routing() -> dict[int, int]:
    return {slot: intx_line(slot) for slot in SLOTS}


def dsdt_aml() -> bytes:
    """The PCI root bridge for the DSDT: a Linux with ACPI scans PCI only below a PNP0A03 device."""
    return aml.pci_root((WINDOW_BASE, WINDOW_SIZE), (CONFIG_ADDRESS_PORT, CONFIG_PORT_LENGTH), routing())


def _safe_msi(vm: Vm) -> Callable[[int, int], None]:
    """The guest programs the MSI-X table: an address KVM refuses must cost the guest its interrupt only."""

    def send(address: int, data: int) -> None:
        try:
            vm.signal_msi(address, data)
        except HypervisorError as e:
            log.warning("MSI %#x/%#x refused: %s", address, data, e)

    return send


def attach_pci(
    vm: Vm,
    memory: GuestMemory,
    pio: Bus,
    mmio: Bus,
    devices: list[VirtioDevice],
    notifier: Notifier | None = None,
    send_msi: Callable[[int, int], None] | None = None,
) -> PciRoot:
    root = PciRoot()
    pio.insert(root, CONFIG_ADDRESS_PORT, CONFIG_PORT_LENGTH)
    mmio.insert(PciWindow(root), WINDOW_BASE, WINDOW_SIZE)
    send_msi = send_msi or _safe_msi(vm)
    for slot, device in zip(SLOTS, devices, strict=False):
        device.memory = memory
        if notifier is not None:  # turns left over from a budget run on the notifier thread
            device.defer = notifier.call_soon
        line = intx_line(slot)
        irq = IrqLine(line, vm.set_irq_line)
        function = VirtioPci(device, root.allocate_bar(BAR_SIZE), send_msi, irq, line, notifier)
        assert root.add(function) == slot
    return root
