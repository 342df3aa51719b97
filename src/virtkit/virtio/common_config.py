"""The virtio common configuration register file (virtio 1.2 section 4.1.4.3), as Cloud Hypervisor keeps
``virtio-devices/src/transport/pci_common_config.rs`` apart from its MSI-X table.

``Reg`` names each register with its place in the virtio-pci layout; ``CommonConfig`` gives them their meaning
over a ``VirtioDevice`` (feature windows, status, the selected queue's fields). A virtio-mmio transport would
map its own offsets onto the same registers and call ``read_register``/``write_register``; the PCI transport
uses ``read``/``write``, which accept any byte range of the layout (drivers may access fields piecewise).

The rules a hostile driver meets here: the status goes through ``VirtioDevice.set_status`` (the state machine),
features through ``accept_features`` (frozen after FEATURES_OK), and a queue's fields only change while the
device lets them (``VirtioDevice.queue_writable``); enabling a queue validates it (``enable_queue``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from virtkit.virtio.device import VirtioDevice
from virtkit.virtio.queue import SplitQueue

LENGTH = 0x38
NO_VECTOR = 0xFFFF
FEATURE_WINDOWS = 2  # features are 64 bits, read and written 32 at a time


class Reg(enum.Enum):
    """struct virtio_pci_common_cfg: (offset, size) of each field."""

    DEVICE_FEATURE_SELECT = (0x00, 4)
    DEVICE_FEATURE = (0x04, 4)
    DRIVER_FEATURE_SELECT = (0x08, 4)
    DRIVER_FEATURE = (0x0C, 4)
    CONFIG_MSIX_VECTOR = (0x10, 2)
    NUM_QUEUES = (0x12, 2)
    DEVICE_STATUS = (0x14, 1)
    CONFIG_GENERATION = (0x15, 1)
    QUEUE_SELECT = (0x16, 2)
    QUEUE_SIZE = (0x18, 2)
    QUEUE_MSIX_VECTOR = (0x1A, 2)
    QUEUE_ENABLE = (0x1C, 2)
    QUEUE_NOTIFY_OFF = (0x1E, 2)
    QUEUE_DESC_LO = (0x20, 4)
    QUEUE_DESC_HI = (0x24, 4)
    QUEUE_DRIVER_LO = (0x28, 4)
    QUEUE_DRIVER_HI = (0x2C, 4)
    QUEUE_DEVICE_LO = (0x30, 4)
    QUEUE_DEVICE_HI = (0x34, 4)

    def __init__(self, offset: int, size: int) -> None:
        self.offset = offset
        self.size = size


class Ring(enum.Enum):
    DESC = "descriptor table"
    DRIVER = "available ring"
    DEVICE = "used ring"


# the 64-bit ring addresses, written as two 32-bit halves: register -> (ring, shift)
_RING_HALVES = {
    Reg.QUEUE_DESC_LO: (Ring.DESC, 0),
    Reg.QUEUE_DESC_HI: (Ring.DESC, 32),
    Reg.QUEUE_DRIVER_LO: (Ring.DRIVER, 0),
    Reg.QUEUE_DRIVER_HI: (Ring.DRIVER, 32),
    Reg.QUEUE_DEVICE_LO: (Ring.DEVICE, 0),
    Reg.QUEUE_DEVICE_HI: (Ring.DEVICE, 32),
}


def ring_address(q: SplitQueue, ring: Ring) -> int:
    match ring:
        case Ring.DESC:
            return q.desc_table
        case Ring.DRIVER:
            return q.avail_ring
        case Ring.DEVICE:
            return q.used_ring


def set_ring_address(q: SplitQueue, ring: Ring, address: int) -> None:
    match ring:
        case Ring.DESC:
            q.desc_table = address
        case Ring.DRIVER:
            q.avail_ring = address
        case Ring.DEVICE:
            q.used_ring = address


class CommonConfig:
    """The driver-visible register state of one device; callers hold ``device.lock``.

    ``vectors`` bounds the MSI-X vectors a driver may name (others read back as NO_VECTOR); ``on_reset`` is
    the transport's share of a device reset (the ISR, the INTx line)."""

    def __init__(self, device: VirtioDevice, vectors: int, on_reset: Callable[[], None]) -> None:
        self.device = device
        self.vectors = vectors
        self._on_reset = on_reset
        self.device_feature_select = 0
        self.driver_feature_select = 0
        self.queue_select = 0
        self.config_msix_vector = NO_VECTOR

    def reset(self) -> None:
        self.config_msix_vector = NO_VECTOR
        self.queue_select = 0
        self._on_reset()

    def _vector(self, value: int) -> int:
        return value if value < self.vectors else NO_VECTOR

    def selected_queue(self) -> SplitQueue | None:
        queues = self.device.queues
        return queues[self.queue_select] if self.queue_select < len(queues) else None

    # --- registers ---------------------------------------------------------------------------------------

    def read_register(self, reg: Reg) -> int:
        d = self.device
        match reg:
            case Reg.DEVICE_FEATURE_SELECT:
                return self.device_feature_select
            case Reg.DEVICE_FEATURE:
                return _window(d.features, self.device_feature_select)
            case Reg.DRIVER_FEATURE_SELECT:
                return self.driver_feature_select
            case Reg.DRIVER_FEATURE:
                return _window(d.driver_features, self.driver_feature_select)
            case Reg.CONFIG_MSIX_VECTOR:
                return self.config_msix_vector
            case Reg.NUM_QUEUES:
                return len(d.queues)
            case Reg.DEVICE_STATUS:
                return d.status
            case Reg.CONFIG_GENERATION:
                return d.config_generation
            case Reg.QUEUE_SELECT:
                return self.queue_select
        q = self.selected_queue()
        if q is None:
            return 0
        match reg:
            case Reg.QUEUE_SIZE:
                return q.size
            case Reg.QUEUE_MSIX_VECTOR:
                return q.msix_vector
            case Reg.QUEUE_ENABLE:
                return int(q.ready)
            case Reg.QUEUE_NOTIFY_OFF:
                return self.queue_select  # the notify area's offset names the queue
        ring, shift = _RING_HALVES[reg]
        return (ring_address(q, ring) >> shift) & 0xFFFFFFFF

    def write_register(self, reg: Reg, value: int) -> None:
        d = self.device
        match reg:
            case Reg.DEVICE_FEATURE_SELECT:
                self.device_feature_select = value
                return
            case Reg.DRIVER_FEATURE_SELECT:
                self.driver_feature_select = value
                return
            case Reg.DRIVER_FEATURE:
                if self.driver_feature_select < FEATURE_WINDOWS:
                    shift = 32 * self.driver_feature_select
                    d.accept_features((d.driver_features & ~(0xFFFFFFFF << shift)) | (value << shift))
                return
            case Reg.CONFIG_MSIX_VECTOR:
                self.config_msix_vector = self._vector(value)
                return
            case Reg.DEVICE_STATUS:
                d.set_status(value)
                if value == 0:
                    self.reset()
                return
            case Reg.QUEUE_SELECT:
                self.queue_select = value
                return
            case Reg.DEVICE_FEATURE | Reg.NUM_QUEUES | Reg.CONFIG_GENERATION | Reg.QUEUE_NOTIFY_OFF:
                return  # read-only
        q = self.selected_queue()
        if q is None or not d.queue_writable(q):
            return
        match reg:
            case Reg.QUEUE_SIZE:
                q.size = value
            case Reg.QUEUE_MSIX_VECTOR:
                q.msix_vector = self._vector(value)
            case Reg.QUEUE_ENABLE:
                if value == 1:
                    d.enable_queue(self.queue_select)
            case _:
                ring, shift = _RING_HALVES[reg]
                kept = ring_address(q, ring) & ~(0xFFFFFFFF << shift)
                set_ring_address(q, ring, kept | (value << shift))

    # --- byte accesses over the virtio-pci layout -----------------------------------------------------------

    def read(self, offset: int, size: int) -> bytes:
        out = bytearray(size)
        for reg in Reg:
            lo, hi = max(offset, reg.offset), min(offset + size, reg.offset + reg.size)
            if lo < hi:
                value = self.read_register(reg).to_bytes(8, "little")[: reg.size]
                out[lo - offset : hi - offset] = value[lo - reg.offset : hi - reg.offset]
        return bytes(out)

    def write(self, offset: int, data: bytes) -> None:
        for reg in Reg:
            lo, hi = max(offset, reg.offset), min(offset + len(data), reg.offset + reg.size)
            if lo < hi:
                current = bytearray(self.read_register(reg).to_bytes(8, "little")[: reg.size])
                current[lo - reg.offset : hi - reg.offset] = data[lo - offset : hi - offset]
                self.write_register(reg, int.from_bytes(current, "little"))


def _window(features: int, select: int) -> int:
    return (features >> (32 * select)) & 0xFFFFFFFF if select < FEATURE_WINDOWS else 0
