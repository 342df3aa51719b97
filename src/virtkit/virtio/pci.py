"""The virtio-pci modern transport (virtio 1.2 section 4.1): one 32-bit memory BAR holding the common
config, ISR, device config, notification area and the MSI-X table and PBA, described by vendor capabilities.

Interrupts go out as MSI-X messages when the driver enabled MSI-X, else through INTx (ISR bits plus a level
line). Notifications arrive as writes to the notify area and are served synchronously by the device.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from typing import Protocol

from virtkit.devices.pci.config import COMMAND_MEMORY, PciConfig
from virtkit.devices.trigger import Trigger
from virtkit.virtio.device import VirtioDevice
from virtkit.virtio.queue import SplitQueue

VIRTIO_VENDOR = 0x1AF4
PCI_DEVICE_BASE = 0x1040
CAP_VENDOR = 0x09
CAP_MSIX = 0x11
COMMON_CFG, NOTIFY_CFG, ISR_CFG, DEVICE_CFG, PCI_CFG = 1, 2, 3, 4, 5

# the BAR's layout
BAR_SIZE = 0x8000
COMMON_OFFSET, COMMON_LENGTH = 0x0000, 0x38
ISR_OFFSET, ISR_LENGTH = 0x1000, 1
DEVICE_OFFSET, DEVICE_LENGTH = 0x2000, 0x1000
NOTIFY_OFFSET, NOTIFY_LENGTH = 0x3000, 0x1000
NOTIFY_MULTIPLIER = 4
MSIX_TABLE_OFFSET = 0x4000
MSIX_PBA_OFFSET = 0x6000
NO_VECTOR = 0xFFFF
ISR_QUEUE, ISR_CONFIG = 1, 2

# PCI class codes per device type (QEMU's choices)
CLASS_CODES = {3: 0x078000, 4: 0xFF0000}

MsiSender = Callable[[int, int], None]  # (address, data)


class NotifyWiring(Protocol):
    """ioeventfd: queue notifications served off the vCPU thread (machine.notifier.Notifier)."""

    def register(self, address: int, callback: Callable[[], None]) -> bool: ...

    def unregister(self, address: int) -> None: ...


# common config fields: offset -> (size, name)
_COMMON = {
    0x00: (4, "device_feature_select"),
    0x04: (4, "device_feature"),
    0x08: (4, "driver_feature_select"),
    0x0C: (4, "driver_feature"),
    0x10: (2, "config_msix_vector"),
    0x12: (2, "num_queues"),
    0x14: (1, "device_status"),
    0x15: (1, "config_generation"),
    0x16: (2, "queue_select"),
    0x18: (2, "queue_size"),
    0x1A: (2, "queue_msix_vector"),
    0x1C: (2, "queue_enable"),
    0x1E: (2, "queue_notify_off"),
    0x20: (4, "queue_desc_lo"),
    0x24: (4, "queue_desc_hi"),
    0x28: (4, "queue_driver_lo"),
    0x2C: (4, "queue_driver_hi"),
    0x30: (4, "queue_device_lo"),
    0x34: (4, "queue_device_hi"),
}


def _virtio_cap(cfg_type: int, offset: int, length: int, extra: bytes = b"") -> bytes:
    """struct virtio_pci_cap without its first two bytes (cap_vndr, cap_next)."""
    return struct.pack("<BBBB2xII", 16 + len(extra), cfg_type, 0, 0, offset, length) + extra


class VirtioPci:
    """A virtio device as PCI function: config space, BAR accesses and interrupt delivery."""

    def __init__(self, device: VirtioDevice, bar_address: int, send_msi: MsiSender, intx: Trigger,
                 intx_line: int, wiring: NotifyWiring | None = None) -> None:  # fmt: skip
        self.device = device
        self.send_msi = send_msi
        self.intx = intx
        self.vectors = len(device.queues) + 1
        pci_id = PCI_DEVICE_BASE + device.device_id
        self.config = PciConfig(VIRTIO_VENDOR, pci_id, CLASS_CODES.get(device.device_id, 0xFF0000), revision=1,
                                subsystem=(VIRTIO_VENDOR, pci_id))  # fmt: skip
        self.config.add_bar(0, BAR_SIZE, bar_address)
        self.config.set_interrupt_pin(1, intx_line)
        self.config.add_capability(CAP_VENDOR, _virtio_cap(COMMON_CFG, COMMON_OFFSET, COMMON_LENGTH))
        self.config.add_capability(CAP_VENDOR, _virtio_cap(ISR_CFG, ISR_OFFSET, ISR_LENGTH))
        self.config.add_capability(CAP_VENDOR, _virtio_cap(DEVICE_CFG, DEVICE_OFFSET, DEVICE_LENGTH))
        self.config.add_capability(CAP_VENDOR, _virtio_cap(NOTIFY_CFG, NOTIFY_OFFSET, NOTIFY_LENGTH,
                                                           struct.pack("<I", NOTIFY_MULTIPLIER)))  # fmt: skip
        # VIRTIO_PCI_CAP_PCI_CFG (4.1.4.9): a window into the BAR through config space; bar, offset and length
        # are the driver's to write, pci_cfg_data is the access
        cfg_cap = _virtio_cap(PCI_CFG, 0, 0, bytes(4))
        self.cfg_cap = self.config.add_capability(
            CAP_VENDOR, cfg_cap, writable=bytes(2) + b"\xff" + bytes(3) + b"\xff" * 8 + bytes(4)
        )
        self.config.window = (self.cfg_cap + 16, self._cfg_window_read, self._cfg_window_write)
        msix_body = struct.pack("<HII", self.vectors - 1, MSIX_TABLE_OFFSET, MSIX_PBA_OFFSET)
        self.msix_cap = self.config.add_capability(CAP_MSIX, msix_body, writable=b"\x00\xc0" + bytes(8))
        self.msix_table = bytearray(16 * self.vectors)
        for v in range(self.vectors):
            self.msix_table[16 * v + 12] = 1  # masked at reset
        self.pending = [False] * self.vectors
        self.isr = 0
        self.device_feature_select = 0
        self.driver_feature_select = 0
        self.queue_select = 0
        self.config_msix_vector = NO_VECTOR
        device.interrupt = _Interrupt(self)
        self.wiring = wiring
        self._wired: set[int] = set()
        self.config.on_change = self._config_changed

    # --- the PCI configuration access capability -----------------------------------------------------------

    def _cfg_window(self) -> tuple[int, int] | None:
        bar, offset, length = (
            self.config.data[self.cfg_cap + 4],
            *struct.unpack_from("<II", self.config.data, self.cfg_cap + 8),
        )
        if bar != 0 or length not in (1, 2, 4) or offset + length > BAR_SIZE:
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
            if self.msix_enabled:
                self._deliver_pending()

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
        return bool(self._msix_control() & 0x8000)

    def signal(self, vector: int, isr_bit: int) -> None:
        if self.msix_enabled:
            self._msix(vector)
        else:
            self.isr |= isr_bit
            if not self.config.command & 0x400:  # INTx disable
                self.intx.set_level(True)

    def _msix(self, vector: int) -> None:
        if vector >= self.vectors:
            return  # NO_VECTOR (or nonsense): the driver asked for no interrupt
        masked = self._msix_control() & 0x4000 or self.msix_table[16 * vector + 12] & 1
        if masked:
            self.pending[vector] = True
            return
        self.pending[vector] = False
        address, data = struct.unpack_from("<QI", self.msix_table, 16 * vector)
        self.send_msi(address, data)

    def _deliver_pending(self) -> None:
        for vector, pending in enumerate(self.pending):
            if pending:
                self._msix(vector)

    # --- the BAR -------------------------------------------------------------------------------------------

    def bar_read(self, bar: int, offset: int, size: int) -> bytes:
        if size not in (1, 2, 4, 8):
            return b"\xff" * size
        with self.device.lock:
            if COMMON_OFFSET <= offset < COMMON_OFFSET + COMMON_LENGTH:
                return self._common_read(offset - COMMON_OFFSET, size)
            if offset == ISR_OFFSET:
                value, self.isr = self.isr, 0  # reading the ISR acknowledges and deasserts INTx
                self.intx.set_level(False)
                return bytes([value]) + bytes(size - 1)
            if DEVICE_OFFSET <= offset < DEVICE_OFFSET + DEVICE_LENGTH:
                return self.device.read_config(offset - DEVICE_OFFSET, size)
            if MSIX_TABLE_OFFSET <= offset < MSIX_TABLE_OFFSET + len(self.msix_table):
                o = offset - MSIX_TABLE_OFFSET
                return bytes(self.msix_table[o : o + size]).ljust(size, b"\0")
            if MSIX_PBA_OFFSET <= offset < MSIX_PBA_OFFSET + 8:
                bits = sum(1 << v for v, p in enumerate(self.pending) if p)
                return bits.to_bytes(8, "little")[offset - MSIX_PBA_OFFSET :][:size].ljust(size, b"\0")
            return bytes(size)

    def bar_write(self, bar: int, offset: int, data: bytes) -> None:
        if len(data) not in (1, 2, 4, 8):
            return
        if NOTIFY_OFFSET <= offset < NOTIFY_OFFSET + NOTIFY_LENGTH:
            # queue_notify_off is the queue index, so the offset names the queue
            self.device.notify((offset - NOTIFY_OFFSET) // NOTIFY_MULTIPLIER)
            return
        with self.device.lock:
            if COMMON_OFFSET <= offset < COMMON_OFFSET + COMMON_LENGTH:
                self._common_write(offset - COMMON_OFFSET, data)
            elif DEVICE_OFFSET <= offset < DEVICE_OFFSET + DEVICE_LENGTH:
                self.device.write_config(offset - DEVICE_OFFSET, data)
            elif MSIX_TABLE_OFFSET <= offset < MSIX_TABLE_OFFSET + len(self.msix_table):
                o = offset - MSIX_TABLE_OFFSET
                n = min(len(data), len(self.msix_table) - o)
                self.msix_table[o : o + n] = data[:n]
                self._deliver_pending()

    # --- the common configuration structure -------------------------------------------------------------

    def _queue(self) -> SplitQueue | None:
        queues = self.device.queues
        return queues[self.queue_select] if self.queue_select < len(queues) else None

    def _get(self, name: str) -> int:
        d, q = self.device, self._queue()
        match name:
            case "device_feature_select":
                return self.device_feature_select
            case "device_feature":
                return (
                    (d.features >> (32 * self.device_feature_select)) & 0xFFFFFFFF
                    if self.device_feature_select < 2
                    else 0
                )
            case "driver_feature_select":
                return self.driver_feature_select
            case "driver_feature":
                return (
                    (d.driver_features >> (32 * self.driver_feature_select)) & 0xFFFFFFFF
                    if self.driver_feature_select < 2
                    else 0
                )
            case "config_msix_vector":
                return self.config_msix_vector
            case "num_queues":
                return len(d.queues)
            case "device_status":
                return d.status
            case "config_generation":
                return d.config_generation
            case "queue_select":
                return self.queue_select
        if q is None:
            return 0
        match name:
            case "queue_size":
                return q.size
            case "queue_msix_vector":
                return q.msix_vector
            case "queue_enable":
                return int(q.ready)
            case "queue_notify_off":
                return self.queue_select
            case "queue_desc_lo" | "queue_driver_lo" | "queue_device_lo":
                return int(getattr(q, _ADDR[name[:-3]])) & 0xFFFFFFFF
            case "queue_desc_hi" | "queue_driver_hi" | "queue_device_hi":
                return int(getattr(q, _ADDR[name[:-3]])) >> 32
        return 0

    def _set(self, name: str, value: int) -> None:
        d, q = self.device, self._queue()
        match name:
            case "device_feature_select":
                self.device_feature_select = value
            case "driver_feature_select":
                self.driver_feature_select = value
            case "driver_feature":
                if self.driver_feature_select < 2:
                    shift = 32 * self.driver_feature_select
                    d.accept_features((d.driver_features & ~(0xFFFFFFFF << shift)) | (value << shift))
            case "config_msix_vector":
                self.config_msix_vector = value if value < self.vectors else NO_VECTOR
            case "device_status":
                d.set_status(value)
                if value == 0:
                    self._reset()
            case "queue_select":
                self.queue_select = value
        # queue fields are frozen once the queue is enabled (4.1.4.3.2) and before FEATURES_OK is pointless
        if q is None or q.ready or d.status & 0x04:
            return
        match name:
            case "queue_size":
                q.size = value
            case "queue_msix_vector":
                q.msix_vector = value if value < self.vectors else NO_VECTOR
            case "queue_enable":
                if value == 1:
                    q.ready = True
            case "queue_desc_lo" | "queue_driver_lo" | "queue_device_lo":
                attr = _ADDR[name[:-3]]
                setattr(q, attr, (getattr(q, attr) & ~0xFFFFFFFF) | value)
            case "queue_desc_hi" | "queue_driver_hi" | "queue_device_hi":
                attr = _ADDR[name[:-3]]
                setattr(q, attr, (getattr(q, attr) & 0xFFFFFFFF) | (value << 32))

    def _reset(self) -> None:
        self.isr = 0
        self.intx.set_level(False)
        self.config_msix_vector = NO_VECTOR
        self.queue_select = 0

    def _common_read(self, offset: int, size: int) -> bytes:
        out = bytearray(size)
        for field_offset, (field_size, name) in _COMMON.items():
            lo, hi = max(offset, field_offset), min(offset + size, field_offset + field_size)
            if lo < hi:
                value = self._get(name).to_bytes(8, "little")[:field_size]
                out[lo - offset : hi - offset] = value[lo - field_offset : hi - field_offset]
        return bytes(out)

    def _common_write(self, offset: int, data: bytes) -> None:
        for field_offset, (field_size, name) in _COMMON.items():
            lo, hi = max(offset, field_offset), min(offset + len(data), field_offset + field_size)
            if lo < hi:
                current = bytearray(self._get(name).to_bytes(8, "little")[:field_size])
                current[lo - field_offset : hi - field_offset] = data[lo - offset : hi - offset]
                self._set(name, int.from_bytes(current, "little"))


_ADDR = {"queue_desc": "desc_table", "queue_driver": "avail_ring", "queue_device": "used_ring"}


class _Interrupt:
    """The device's view of its transport's interrupts."""

    def __init__(self, transport: VirtioPci) -> None:
        self._t = transport

    def queue(self, index: int) -> None:
        self._t.signal(self._t.device.queues[index].msix_vector, ISR_QUEUE)

    def config(self) -> None:
        self._t.signal(self._t.config_msix_vector, ISR_CONFIG)
