"""The virtio device interface (virtio 1.2 sections 2.1-2.5, 3.1): features, status, config space, queues,
activate, reset and NEEDS_RESET. A transport drives it; a device subclass implements ``process``.

Devices run hostile drivers' requests: a ``VirtqueueError`` (or any bad buffer) in ``process`` never escapes
to the VMM; the device flags itself DEVICE_NEEDS_RESET, raises a config-change interrupt, and ignores its
queues until the driver resets it.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from virtkit.memory import GuestMemory
from virtkit.memory.guest import GuestMemoryError
from virtkit.virtio.queue import SplitQueue, VirtqueueError

log = logging.getLogger(__name__)

# device status bits (2.1)
ACKNOWLEDGE = 1
DRIVER = 2
DRIVER_OK = 4
FEATURES_OK = 8
DEVICE_NEEDS_RESET = 0x40
FAILED = 0x80

# transport/ring feature bits (6)
VIRTIO_F_INDIRECT_DESC = 1 << 28
VIRTIO_F_EVENT_IDX = 1 << 29
VIRTIO_F_VERSION_1 = 1 << 32
VIRTIO_F_ACCESS_PLATFORM = 1 << 33

COMMON_FEATURES = VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC | VIRTIO_F_EVENT_IDX


class Interrupt(Protocol):
    """How a device tells the driver something happened; the transport decides between MSI-X and INTx."""

    def queue(self, index: int) -> None: ...

    def config(self) -> None: ...


class NoInterrupt:
    def queue(self, index: int) -> None:
        pass

    def config(self) -> None:
        pass


class VirtioDevice:
    """Base of every device. Subclasses set ``device_id``, ``queue_sizes`` and ``device_features`` and
    override ``process`` (and ``read_config``/``write_config`` when they have a config space)."""

    device_id = 0
    name = "virtio"
    queue_sizes: tuple[int, ...] = (256,)
    device_features = 0

    def __init__(self) -> None:
        self.features = COMMON_FEATURES | self.device_features
        self.queues = [SplitQueue(size) for size in self.queue_sizes]
        self.memory: GuestMemory | None = None
        self.interrupt: Interrupt = NoInterrupt()
        # queue work may come from a vCPU thread or a notification thread: one at a time
        self.lock = threading.RLock()
        self.status = 0
        self.driver_features = 0
        self.config_generation = 0
        self.broken: str | None = None  # why the device needs a reset
        self.activated = False

    # --- driver-facing state ----------------------------------------------------------------------------

    def set_status(self, value: int) -> None:
        value &= 0xFF
        if value == 0:
            self.reset()
            return
        # the driver may not accept what we never offered (2.2.1); refuse by not setting FEATURES_OK
        bad = self.driver_features & ~self.features or not self.driver_features & VIRTIO_F_VERSION_1
        if value & FEATURES_OK and not self.status & FEATURES_OK and bad:
            value &= ~FEATURES_OK
        keep = self.status & DEVICE_NEEDS_RESET
        self.status = value | keep
        if value & DRIVER_OK and not self.activated and not self.broken:
            self.activate()

    def accept_features(self, value: int) -> None:
        if not self.status & FEATURES_OK:
            self.driver_features = value

    def activate(self) -> None:
        """The driver set DRIVER_OK: check the queues it enabled and start serving them."""
        assert self.memory is not None
        event_idx = bool(self.driver_features & VIRTIO_F_EVENT_IDX)
        for q in self.queues:
            q.event_idx = event_idx
            if q.ready:
                try:
                    q.check(self.memory)
                except VirtqueueError as e:
                    self.needs_reset(str(e))
                    return
        self.activated = True
        self.on_activate()
        for index, q in enumerate(self.queues):
            if q.ready:
                self.notify(index)  # buffers offered before DRIVER_OK

    def reset(self) -> None:
        with self.lock:
            self.status = 0
            self.driver_features = 0
            self.broken = None
            self.activated = False
            for q in self.queues:
                q.reset()
            self.on_reset()

    def needs_reset(self, reason: str) -> None:
        log.warning("%s: needs reset: %s", self.name, reason)
        self.broken = reason
        self.status |= DEVICE_NEEDS_RESET
        self.config_generation = (self.config_generation + 1) & 0xFF
        self.interrupt.config()

    # --- queues ------------------------------------------------------------------------------------------

    def notify(self, index: int) -> None:
        """The driver notified queue ``index``: serve it unless the device is broken or inactive."""
        if index >= len(self.queues) or not self.activated or self.broken:
            return
        with self.lock:
            if self.broken or self.memory is None:
                return
            try:
                self.process(index, self.queues[index], self.memory)
            except (VirtqueueError, GuestMemoryError) as e:
                self.needs_reset(str(e))

    def complete(self, index: int, head: int, written: int) -> None:
        """Give a chain back and interrupt the driver if it asked for it."""
        assert self.memory is not None
        q = self.queues[index]
        q.push(self.memory, head, written)
        if q.needs_interrupt(self.memory):
            self.interrupt.queue(index)

    # --- for subclasses ------------------------------------------------------------------------------------

    def process(self, index: int, queue: SplitQueue, memory: GuestMemory) -> None:
        """Take and complete available chains. Raise VirtqueueError for a protocol violation."""

    def on_activate(self) -> None:
        pass

    def on_reset(self) -> None:
        pass

    def read_config(self, offset: int, size: int) -> bytes:
        return bytes(size)

    def write_config(self, offset: int, data: bytes) -> None:
        pass
