"""The virtio device interface (virtio 1.2 sections 2.1-2.5, 3.1): features, status, config space, queues,
activate, reset and NEEDS_RESET. A transport drives it; a device subclass implements ``process``.

Devices run hostile drivers' requests, and the rules are kept here, once, for every device and transport:

- The device status (2.1) is a state machine: bits are only ever added, except by a reset (writing 0);
  FEATURES_OK is refused for features never offered, and features freeze once it is set; DRIVER_OK needs
  FEATURES_OK; FAILED stops the device. Clearing a bit without a reset, or DRIVER_OK without FEATURES_OK,
  puts the device in DEVICE_NEEDS_RESET.
- A queue's fields change only while it is disabled and DRIVER_OK is not set; it is validated when enabled
  (size a power of two up to its maximum, rings aligned and inside guest RAM), at DRIVER_OK, and again
  before each turn that serves it.
- Work is done in turns bounded by the device's ``Budget`` (chains, bytes, time); the device lock is held for
  one turn at most, and what is left is deferred to the next turn (``defer``, the machine's notifier thread).
- Any guest error on any path, the driver's or the host's (console input, used-ring pushes, interrupts),
  flags DEVICE_NEEDS_RESET, raises a config-change interrupt and the device serves nothing until the driver
  resets it. Nothing escapes into a vCPU or a host thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from virtkit.memory import GuestMemory
from virtkit.memory.guest import GuestMemoryError
from virtkit.virtio.budget import Budget, Turn
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

# without a scheduler (unit tests, a machine without ioeventfd) a notify runs this many turns, letting go of
# the lock between them, and leaves the rest to the next notify
INLINE_TURNS = 16

Schedule = Callable[[Callable[[], None]], None]


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
    """Base of every device. Subclasses set ``device_id``, ``queue_sizes``, ``device_features`` and their
    ``budget`` and override ``process`` (and ``read_config``/``write_config`` when they have a config space)."""

    device_id = 0
    name = "virtio"
    queue_sizes: tuple[int, ...] = (256,)
    device_features = 0
    budget = Budget()

    def __init__(self) -> None:
        self.features = COMMON_FEATURES | self.device_features
        self.queues = [SplitQueue(size) for size in self.queue_sizes]
        self.memory: GuestMemory | None = None
        self.interrupt: Interrupt = NoInterrupt()
        # queue work may come from a vCPU thread, the notifier thread or a host thread: one at a time
        self.lock = threading.RLock()
        self.status = 0
        self.driver_features = 0
        self.config_generation = 0
        self.broken: str | None = None  # why the device needs a reset
        self.activated = False
        self.defer: Schedule | None = None  # runs a deferred turn later on another thread (the machine's)
        self.deferred: set[int] = set()  # queues with work left over from a turn
        self._epoch = 0  # counts resets, so a turn deferred before one is dropped
        self.resets_flagged = 0

    @property
    def serving(self) -> bool:
        return self.activated and self.broken is None and not self.status & FAILED

    # --- the status state machine ----------------------------------------------------------------------------

    def set_status(self, value: int) -> None:
        with self.lock:
            value &= 0xFF
            if value == 0:
                self.reset()
                return
            value &= ~DEVICE_NEEDS_RESET  # the device's bit, not the driver's to write
            old = self.status & ~DEVICE_NEEDS_RESET
            if old & ~value:
                self.needs_reset(f"the driver cleared status bits {old & ~value:#x} without a reset")
                return
            added = value & ~old
            # the driver may not accept what we never offered (2.2.1); refuse by not setting FEATURES_OK
            if added & FEATURES_OK and not self._features_acceptable():
                value &= ~FEATURES_OK
                added &= ~FEATURES_OK
            self.status = value | (self.status & DEVICE_NEEDS_RESET)
            if value & FAILED or not added & DRIVER_OK:
                return  # FAILED: the driver gave up on the device, which serves nothing until a reset
            if not value & FEATURES_OK:
                self.needs_reset("the driver set DRIVER_OK without FEATURES_OK")
            elif self.broken is None:
                self.activate()

    def _features_acceptable(self) -> bool:
        return not self.driver_features & ~self.features and bool(self.driver_features & VIRTIO_F_VERSION_1)

    def accept_features(self, value: int) -> None:
        if not self.status & FEATURES_OK:  # frozen once FEATURES_OK is set (3.1.1)
            self.driver_features = value

    def queue_writable(self, queue: SplitQueue) -> bool:
        """Whether the driver may change ``queue``'s size, vector and rings now (4.1.4.3.2)."""
        return not (queue.ready or self.status & (DRIVER_OK | FAILED) or self.broken is not None)

    def enable_queue(self, index: int) -> None:
        """The driver wrote queue_enable = 1: validate the queue, or flag NEEDS_RESET and leave it off."""
        q = self.queues[index]
        if not self.queue_writable(q):
            return
        if self.memory is not None:
            try:
                q.check(self.memory)
            except VirtqueueError as e:
                self.needs_reset(f"queue {index}: {e}")
                return
        q.ready = True

    def activate(self) -> None:
        """The driver set DRIVER_OK: check the queues it enabled and start serving them."""
        assert self.memory is not None
        event_idx = bool(self.driver_features & VIRTIO_F_EVENT_IDX)
        for index, q in enumerate(self.queues):
            q.event_idx = event_idx
            if q.ready:
                try:
                    q.check(self.memory)
                except VirtqueueError as e:
                    self.needs_reset(f"queue {index}: {e}")
                    return
        self.activated = True
        self.on_activate()
        for index, q in enumerate(self.queues):
            if not q.ready:
                continue
            if self.defer is not None:  # buffers offered before DRIVER_OK: served in turns, not under this lock
                self.deferred.add(index)
                self._schedule(index)
            else:
                self._turn(index)

    def reset(self) -> None:
        with self.lock:
            self.status = 0
            self.driver_features = 0
            self.broken = None
            self.activated = False
            self.deferred.clear()
            self._epoch += 1
            for q in self.queues:
                q.reset()
            self.on_reset()

    def needs_reset(self, reason: str) -> None:
        with self.lock:
            if self.broken is None:
                log.warning("%s: needs reset: %s", self.name, reason)
                self.resets_flagged += 1
            self.broken = reason
            self.deferred.clear()
            self.status |= DEVICE_NEEDS_RESET
            self.config_generation = (self.config_generation + 1) & 0xFF
            try:
                self.interrupt.config()
            except Exception:  # the host could not deliver it: the driver still sees the status bit
                log.exception("%s: config interrupt failed", self.name)

    def guarded(self, what: str, work: Callable[[], object]) -> None:
        """Run ``work`` (which touches guest memory) under the lock; a guest error flags NEEDS_RESET and any
        other failure is logged and does the same, so a host thread calling this never sees an exception."""
        with self.lock:
            try:
                work()
            except (VirtqueueError, GuestMemoryError) as e:
                self.needs_reset(str(e))
            except Exception as e:
                log.exception("%s: %s failed", self.name, what)
                self.needs_reset(f"{what} failed: {e}")

    # --- queues ------------------------------------------------------------------------------------------

    def served_queue(self, index: int) -> SplitQueue | None:
        """Queue ``index`` if the device may serve it now, checked again; VirtqueueError if it is unsound."""
        if not self.serving or self.memory is None:
            return None
        q = self.queues[index]
        if not q.ready:
            return None
        q.check(self.memory)
        return q

    def notify(self, index: int) -> None:
        """The driver notified queue ``index``: serve it for a turn, and later turns if work is left."""
        if index >= len(self.queues) or not self.serving:
            return
        if self.defer is not None:
            if index in self.deferred:
                return  # a turn is already scheduled for this queue: notifying again queues no more work
            if self._turn(index):
                self._schedule(index)
            return
        for _ in range(INLINE_TURNS):  # the lock is let go between turns
            if not self._turn(index):
                return

    def _schedule(self, index: int) -> None:
        if self.defer is not None:
            epoch = self._epoch
            try:
                self.defer(lambda: self._continue(index, epoch))
            except Exception:  # the scheduler is closing: the next notify continues
                self.deferred.discard(index)
                log.debug("%s: could not defer queue %d", self.name, index, exc_info=True)

    def _continue(self, index: int, epoch: int) -> None:
        # a turn scheduled before a reset is dropped: the driver starts over
        if epoch == self._epoch and index in self.deferred and self._turn(index):
            self._schedule(index)

    def run_deferred(self) -> None:
        """One turn for each queue with work left (what the scheduler does; for tests and benchmarks)."""
        for index in sorted(self.deferred):
            self._turn(index)

    def _turn(self, index: int) -> bool:
        """Serve queue ``index`` for one budget; True when work is left for another turn."""
        more = False

        def work() -> None:
            nonlocal more
            self.deferred.discard(index)
            q = self.served_queue(index)
            if q is None or self.memory is None:
                return
            more = self.process(index, q, self.memory, self.budget.start())
            if more:
                self.deferred.add(index)

        self.guarded(f"serving queue {index}", work)
        return more and self.serving

    def complete(self, index: int, head: int, written: int) -> None:
        """Give a chain back and interrupt the driver if it asked for it."""
        assert self.memory is not None
        q = self.queues[index]
        q.push(self.memory, head, written)
        if q.needs_interrupt(self.memory):
            self.interrupt.queue(index)

    # --- for subclasses ------------------------------------------------------------------------------------

    def process(self, index: int, queue: SplitQueue, memory: GuestMemory, turn: Turn) -> bool:
        """Take and complete available chains while ``turn`` lasts; True when chains are left for the next
        turn. Raise VirtqueueError for a protocol violation."""
        return False

    def on_activate(self) -> None:
        pass

    def on_reset(self) -> None:
        pass

    def read_config(self, offset: int, size: int) -> bytes:
        return bytes(size)

    def write_config(self, offset: int, data: bytes) -> None:
        pass
