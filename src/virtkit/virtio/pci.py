"""The virtio-pci modern transport (virtio 1.2 section 4.1): one 32-bit memory BAR holding the common
config, ISR, device config, notification area and the MSI-X table and PBA, described by vendor capabilities.

This module is the composition: the capability layout, the BAR decode, the notify area and its ioeventfd
wiring. The register file is ``common_config.CommonConfig`` and the MSI-X table is ``msix.MsixTable``.
Interrupts go out as MSI-X messages when the driver enabled MSI-X, else through INTx (ISR bits plus a level
line). Notifications arrive as writes to the notify area (or through ioeventfd) and are served by the device.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from typing import Protocol

from virtkit.devices.pci.config import COMMAND_MEMORY, PciConfig
from virtkit.devices.trigger import Trigger
from virtkit.virtio import common_config, msix
from virtkit.virtio.common_config import NO_VECTOR, CommonConfig
from virtkit.virtio.device import VirtioDevice
from virtkit.virtio.msix import MsiSender, MsixTable

__all__ = ["NO_VECTOR", "MsiSender", "NotifyWiring", "VirtioPci"]

VIRTIO_VENDOR = 0x1AF4
PCI_DEVICE_BASE = 0x1040  # modern virtio-pci device ids are 0x1040 + the virtio device id
CAP_VENDOR = 0x09
CAP_MSIX = msix.CAP_ID
# virtio_pci_cap.cfg_type (4.1.4)
COMMON_CFG, NOTIFY_CFG, ISR_CFG, DEVICE_CFG, PCI_CFG = 1, 2, 3, 4, 5
VIRTIO_CAP_LENGTH = 16  # struct virtio_pci_cap
COMMAND_INTX_DISABLE = 0x400

# the BAR's layout
BAR_SIZE = 0x8000
COMMON_OFFSET, COMMON_LENGTH = 0x0000, common_config.LENGTH
ISR_OFFSET, ISR_LENGTH = 0x1000, 1
DEVICE_OFFSET, DEVICE_LENGTH = 0x2000, 0x1000
NOTIFY_OFFSET, NOTIFY_LENGTH = 0x3000, 0x1000
NOTIFY_MULTIPLIER = 4
MSIX_TABLE_OFFSET = 0x4000
MSIX_PBA_OFFSET = 0x6000
ISR_QUEUE, ISR_CONFIG = 1, 2
ACCESS_SIZES = (1, 2, 4, 8)

# PCI class codes per device type (QEMU's choices)
CLASS_CODES = {3: 0x078000, 4: 0xFF0000}
DEFAULT_CLASS = 0xFF0000


class NotifyWiring(Protocol):
    """ioeventfd: queue notifications served off the vCPU thread (machine.notifier.Notifier)."""

    def register(self, address: int, callback: Callable[[], None]) -> bool: ...

    def unregister(self, address: int) -> None: ...


def _virtio_cap(cfg_type: int, offset: int, length: int, extra: bytes = b"", bar: int = 0) -> bytes:
    """struct virtio_pci_cap without its first two bytes (cap_vndr, cap_next)."""
    return struct.pack("<BBBB2xII", VIRTIO_CAP_LENGTH + len(extra), cfg_type, bar, 0, offset, length) + extra


# VIRTIO_PCI_CAP_PCI_CFG (4.1.4.9): bar, offset and length are the driver's to write, pci_cfg_data is the access
_PCI_CFG_WRITABLE = bytes(2) + b"\xff" + bytes(3) + b"\xff" * 8 + bytes(4)
# offsets inside struct virtio_pci_cap (from cap_vndr) and virtio_pci_cfg_cap
_CAP_BAR, _CAP_OFFSET, _PCI_CFG_DATA = 4, 8, 16


class VirtioPci:
    """A virtio device as PCI function: config space, BAR accesses and interrupt delivery."""

    def __init__(self, device: VirtioDevice, bar_address: int, send_msi: MsiSender, intx: Trigger,
                 intx_line: int, wiring: NotifyWiring | None = None) -> None:  # fmt: skip
        self.device = device
        self.intx = intx
        self.vectors = len(device.queues) + 1  # one per queue and one for config changes
        pci_id = PCI_DEVICE_BASE + device.device_id
        self.config = PciConfig(VIRTIO_VENDOR, pci_id, CLASS_CODES.get(device.device_id, DEFAULT_CLASS),
                                revision=1, subsystem=(VIRTIO_VENDOR, pci_id))  # fmt: skip
        self.config.add_bar(0, BAR_SIZE, bar_address)
        self.config.set_interrupt_pin(1, intx_line)
        self.config.add_capability(CAP_VENDOR, _virtio_cap(COMMON_CFG, COMMON_OFFSET, COMMON_LENGTH))
        self.config.add_capability(CAP_VENDOR, _virtio_cap(ISR_CFG, ISR_OFFSET, ISR_LENGTH))
        self.config.add_capability(CAP_VENDOR, _virtio_cap(DEVICE_CFG, DEVICE_OFFSET, DEVICE_LENGTH))
        self.config.add_capability(CAP_VENDOR, _virtio_cap(NOTIFY_CFG, NOTIFY_OFFSET, NOTIFY_LENGTH,
                                                           struct.pack("<I", NOTIFY_MULTIPLIER)))  # fmt: skip
        self.cfg_cap = self.config.add_capability(CAP_VENDOR, _virtio_cap(PCI_CFG, 0, 0, bytes(4)),
                                                  writable=_PCI_CFG_WRITABLE)  # fmt: skip
        self.config.window = (self.cfg_cap + _PCI_CFG_DATA, self._cfg_window_read, self._cfg_window_write)
        self.msix = MsixTable(self.vectors, send_msi, self._msix_control)
        self.msix_cap = self.config.add_capability(
            CAP_MSIX, self.msix.capability(MSIX_TABLE_OFFSET, MSIX_PBA_OFFSET), writable=msix.CAP_WRITABLE
        )
        self.isr = 0
        self.common = CommonConfig(device, self.vectors, self._reset)
        device.interrupt = _Interrupt(self)
        self.wiring = wiring
        self._wired: set[int] = set()
        self.config.on_change = self._config_changed

    # --- the PCI configuration access capability -----------------------------------------------------------

    def _cfg_window(self) -> tuple[int, int] | None:
        bar, offset, length = (
            self.config.data[self.cfg_cap + _CAP_BAR],
            *struct.unpack_from("<II", self.config.data, self.cfg_cap + _CAP_OFFSET),
        )
        if bar != 0 or length not in (1, 2, 4) or offset + length > BAR_SIZE:  # 4.1.4.9.1
            return None
        return offset, length

    def _cfg_window_read(self, size: int) -> bytes:
        window = self._cfg_window()
        return self.bar_read(0, *window) if window is not None else b"\xff" * size

    def _cfg_window_write(self, data: bytes) -> None:
        window = self._cfg_window()
        if window is not None:
            self.bar_write(0, window[0], data[: window[1]].ljust(window[1], b"\0"))

    def _config_changed(self) -> None:
        self._rewire()
        with self.device.lock:  # clearing the function mask delivers what it held back
            if self.msix.enabled:
                self.msix.deliver_pending()

    # --- ioeventfd --------------------------------------------------------------------------------------

    def _rewire(self) -> None:
        """Keep one ioeventfd per queue on the notify addresses wherever the BAR decodes now."""
        if self.wiring is None:
            return
        bar = self.config.bars[0]
        wanted: dict[int, int] = {}
        if self.config.command & COMMAND_MEMORY and bar.address:
            base = bar.address + NOTIFY_OFFSET
            wanted = {base + NOTIFY_MULTIPLIER * q: q for q in range(len(self.device.queues))}
        for address in self._wired - wanted.keys():
            self.wiring.unregister(address)
            self._wired.discard(address)
        for address, queue in wanted.items():
            if address not in self._wired and self.wiring.register(
                address, functools.partial(self.device.notify, queue)
            ):
                self._wired.add(address)

    def unwire(self) -> None:
        if self.wiring is not None:
            for address in self._wired:
                self.wiring.unregister(address)
        self._wired.clear()

    # --- interrupts -------------------------------------------------------------------------------------

    def _msix_control(self) -> int:
        return self.config.read(self.msix_cap + 2, 2)

    @property
    def msix_enabled(self) -> bool:
        return self.msix.enabled

    def signal(self, vector: int, isr_bit: int) -> None:
        if self.msix.enabled:
            self.msix.signal(vector)
        else:
            self.isr |= isr_bit
            if not self.config.command & COMMAND_INTX_DISABLE:
                self.intx.set_level(True)

    def _reset(self) -> None:
        """The transport's part of a device reset."""
        self.isr = 0
        self.intx.set_level(False)

    # --- the BAR -------------------------------------------------------------------------------------------

    def bar_read(self, bar: int, offset: int, size: int) -> bytes:
        if size not in ACCESS_SIZES:
            return b"\xff" * size
        with self.device.lock:
            if COMMON_OFFSET <= offset < COMMON_OFFSET + COMMON_LENGTH:
                return self.common.read(offset - COMMON_OFFSET, size)
            if offset == ISR_OFFSET:
                value, self.isr = self.isr, 0  # reading the ISR acknowledges and deasserts INTx
                self.intx.set_level(False)
                return bytes([value]) + bytes(size - 1)
            if DEVICE_OFFSET <= offset < DEVICE_OFFSET + DEVICE_LENGTH:
                return self.device.read_config(offset - DEVICE_OFFSET, size)
            if MSIX_TABLE_OFFSET <= offset < MSIX_TABLE_OFFSET + len(self.msix.table):
                return self.msix.read_table(offset - MSIX_TABLE_OFFSET, size)
            if MSIX_PBA_OFFSET <= offset < MSIX_PBA_OFFSET + msix.PBA_LENGTH:
                return self.msix.read_pba(offset - MSIX_PBA_OFFSET, size)
            return bytes(size)

    def bar_write(self, bar: int, offset: int, data: bytes) -> None:
        if len(data) not in ACCESS_SIZES:
            return
        if NOTIFY_OFFSET <= offset < NOTIFY_OFFSET + NOTIFY_LENGTH:
            # queue_notify_off is the queue index, so the offset names the queue
            self.device.notify((offset - NOTIFY_OFFSET) // NOTIFY_MULTIPLIER)
            return
        with self.device.lock:
            if COMMON_OFFSET <= offset < COMMON_OFFSET + COMMON_LENGTH:
                self.common.write(offset - COMMON_OFFSET, data)
            elif DEVICE_OFFSET <= offset < DEVICE_OFFSET + DEVICE_LENGTH:
                self.device.write_config(offset - DEVICE_OFFSET, data)
            elif MSIX_TABLE_OFFSET <= offset < MSIX_TABLE_OFFSET + len(self.msix.table):
                self.msix.write_table(offset - MSIX_TABLE_OFFSET, data)


class _Interrupt:
    """The device's view of its transport's interrupts."""

    def __init__(self, transport: VirtioPci) -> None:
        self._t = transport

    def queue(self, index: int) -> None:
        self._t.signal(self._t.device.queues[index].msix_vector, ISR_QUEUE)

    def config(self) -> None:
        self._t.signal(self._t.common.config_msix_vector, ISR_CONFIG)
