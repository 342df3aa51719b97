"""The split virtqueue (virtio 1.2 section 2.7), knowing no device.

The guest owns the rings and the descriptors, so every field read from guest memory is hostile: indices are
checked against the queue size, buffers against guest RAM (only through ``GuestMemory``), a chain is capped at
the queue size (or the indirect table's length) so a descriptor loop ends, and any violation raises
``VirtqueueError``, after which the device must be flagged as needing reset.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from virtkit.errors import VirtkitError
from virtkit.memory import GuestMemory
from virtkit.memory.guest import GuestMemoryError

VIRTQ_DESC_F_NEXT = 1
VIRTQ_DESC_F_WRITE = 2
VIRTQ_DESC_F_INDIRECT = 4
VIRTQ_AVAIL_F_NO_INTERRUPT = 1
VIRTQ_USED_F_NO_NOTIFY = 1
MAX_QUEUE_SIZE = 32768
DESC_SIZE = 16
# One chain may not describe more than this many bytes: a guest cannot make a device allocate without bound.
MAX_CHAIN_BYTES = 1 << 24

_DESC = struct.Struct("<QIHH")


class VirtqueueError(VirtkitError):
    """The driver broke the virtqueue protocol; the device must stop using the queue (NEEDS_RESET)."""


@dataclass(frozen=True)
class Descriptor:
    address: int
    length: int
    writable: bool


@dataclass(frozen=True)
class Chain:
    """One available descriptor chain: device-readable buffers first, then device-writable ones."""

    head: int
    readable: tuple[Descriptor, ...]
    writable: tuple[Descriptor, ...]

    @property
    def readable_length(self) -> int:
        return sum(d.length for d in self.readable)

    @property
    def writable_length(self) -> int:
        return sum(d.length for d in self.writable)

    def read(self, memory: GuestMemory, limit: int = MAX_CHAIN_BYTES) -> bytes:
        out = bytearray()
        for d in self.readable:
            if len(out) >= limit:
                break
            out += memory.read(d.address, min(d.length, limit - len(out)))
        return bytes(out)

    def write(self, memory: GuestMemory, data: bytes) -> int:
        """Scatter ``data`` over the writable buffers; returns how many bytes fitted."""
        done = 0
        for d in self.writable:
            if done >= len(data):
                break
            n = min(d.length, len(data) - done)
            memory.write(d.address, data[done : done + n])
            done += n
        return done


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


class SplitQueue:
    """Device side of one split virtqueue. ``size`` and the three addresses are set by the transport."""

    def __init__(self, max_size: int) -> None:
        if not _is_power_of_two(max_size) or max_size > MAX_QUEUE_SIZE:
            raise ValueError(f"queue size {max_size} is not a power of two up to {MAX_QUEUE_SIZE}")
        self.max_size = max_size
        self.reset()

    def reset(self) -> None:
        self.size = self.max_size
        self.ready = False
        self.desc_table = 0
        self.avail_ring = 0
        self.used_ring = 0
        self.msix_vector = 0xFFFF
        self.event_idx = False  # VIRTIO_F_EVENT_IDX negotiated
        self.next_avail = 0
        self.next_used = 0
        self.signalled_used: int | None = None  # used idx at the last interrupt, for event idx

    # --- checks ------------------------------------------------------------------------------------------

    def check(self, memory: GuestMemory) -> None:
        """Validate size and ring placement when the driver enables the queue."""
        if not _is_power_of_two(self.size) or self.size > self.max_size:
            raise VirtqueueError(f"queue size {self.size} is not a power of two up to {self.max_size}")
        n = self.size
        for name, address, length, align in (
            ("descriptor table", self.desc_table, DESC_SIZE * n, 16),
            ("available ring", self.avail_ring, 6 + 2 * n, 2),
            ("used ring", self.used_ring, 6 + 8 * n, 4),
        ):
            if address % align:
                raise VirtqueueError(f"{name} at {address:#x} is not {align}-byte aligned")
            if not memory.contains(address, length):
                raise VirtqueueError(f"{name} at {address:#x}+{length:#x} is outside guest RAM")

    # --- the available ring --------------------------------------------------------------------------------

    def _avail_idx(self, memory: GuestMemory) -> int:
        return self._u16(memory, self.avail_ring + 2)

    def has_available(self, memory: GuestMemory) -> bool:
        return self.ready and self._avail_idx(memory) != self.next_avail

    def pop(self, memory: GuestMemory) -> Chain | None:
        """The next available chain, or None when the driver has offered nothing new."""
        if not self.ready:
            return None
        avail_idx = self._avail_idx(memory)
        pending = (avail_idx - self.next_avail) & 0xFFFF
        if pending == 0:
            return None
        if pending > self.size:
            raise VirtqueueError(f"available index jumped by {pending}, more than the queue size {self.size}")
        slot = self.next_avail % self.size
        head = self._u16(memory, self.avail_ring + 4 + 2 * slot)
        if head >= self.size:
            raise VirtqueueError(f"available ring names descriptor {head}, outside a queue of {self.size}")
        chain = self._walk(memory, head)
        self.next_avail = (self.next_avail + 1) & 0xFFFF
        if self.event_idx:  # avail_event: tell the driver to notify on the next buffer it adds
            self._w16(memory, self.used_ring + 4 + 8 * self.size, self.next_avail)
        return chain

    def _walk(self, memory: GuestMemory, head: int) -> Chain:
        readable: list[Descriptor] = []
        writable: list[Descriptor] = []
        table, limit, index = self.desc_table, self.size, head
        indirect = False
        seen = 0
        total = 0
        while True:
            if seen >= limit:
                raise VirtqueueError(f"descriptor chain from {head} is longer than {limit}: a loop")
            seen += 1
            address, length, flags, nxt = self._desc(memory, table, index)
            if flags & VIRTQ_DESC_F_INDIRECT:
                if indirect:
                    raise VirtqueueError("an indirect table names another indirect table")
                if flags & VIRTQ_DESC_F_NEXT:
                    raise VirtqueueError("an indirect descriptor also has NEXT set")
                if readable or writable:
                    raise VirtqueueError("an indirect descriptor follows direct ones in a chain")
                if length == 0 or length % DESC_SIZE or length // DESC_SIZE > MAX_QUEUE_SIZE:
                    raise VirtqueueError(f"indirect table length {length} is not a multiple of {DESC_SIZE}")
                if not memory.contains(address, length):
                    raise VirtqueueError(f"indirect table at {address:#x}+{length:#x} is outside guest RAM")
                # a chain may not be longer than the queue size, indirect or not (2.7.5.3.1)
                indirect, table, limit, index, seen = True, address, min(length // DESC_SIZE, self.size), 0, 0
                continue
            if length > MAX_CHAIN_BYTES or total + length > MAX_CHAIN_BYTES:
                raise VirtqueueError(f"descriptor chain from {head} is longer than {MAX_CHAIN_BYTES} bytes")
            total += length
            if not memory.contains(address, length):
                raise VirtqueueError(f"buffer {address:#x}+{length:#x} is outside guest RAM")
            if flags & VIRTQ_DESC_F_WRITE:
                writable.append(Descriptor(address, length, True))
            elif writable:
                raise VirtqueueError("a device-readable buffer follows a device-writable one")
            else:
                readable.append(Descriptor(address, length, False))
            if not flags & VIRTQ_DESC_F_NEXT:
                return Chain(head, tuple(readable), tuple(writable))
            if nxt >= limit:
                raise VirtqueueError(f"descriptor {index} points to {nxt}, outside a table of {limit}")
            index = nxt

    def _desc(self, memory: GuestMemory, table: int, index: int) -> tuple[int, int, int, int]:
        try:
            raw = memory.read(table + DESC_SIZE * index, DESC_SIZE)
        except GuestMemoryError as e:
            raise VirtqueueError(str(e)) from e
        address, length, flags, nxt = _DESC.unpack(raw)
        return address, length, flags, nxt

    # --- the used ring ---------------------------------------------------------------------------------------

    def push(self, memory: GuestMemory, head: int, written: int) -> None:
        """Return chain ``head`` to the driver with ``written`` bytes written into it."""
        slot = self.next_used % self.size
        try:
            memory.write(self.used_ring + 4 + 8 * slot, struct.pack("<II", head, written))
        except GuestMemoryError as e:
            raise VirtqueueError(str(e)) from e
        self.next_used = (self.next_used + 1) & 0xFFFF
        # the element must be visible before the index: Python's writes to the mapping are in program order
        # and x86 keeps stores ordered, so no fence is needed here
        self._w16(memory, self.used_ring + 2, self.next_used)

    def needs_interrupt(self, memory: GuestMemory) -> bool:
        """Whether the driver wants an interrupt for what was pushed since the last one (2.7.10)."""
        if self.event_idx:
            used_event = self._u16(memory, self.avail_ring + 4 + 2 * self.size)
            old = self.signalled_used
            new = self.next_used
            self.signalled_used = new
            if old is None:
                return True
            # vring_need_event: (new - event - 1) < (new - old), in 16-bit arithmetic
            return ((new - used_event - 1) & 0xFFFF) < ((new - old) & 0xFFFF)
        flags = self._u16(memory, self.avail_ring)
        return not flags & VIRTQ_AVAIL_F_NO_INTERRUPT

    # --- helpers -----------------------------------------------------------------------------------------

    @staticmethod
    def _u16(memory: GuestMemory, address: int) -> int:
        try:
            return memory.read_u16(address)
        except GuestMemoryError as e:
            raise VirtqueueError(str(e)) from e

    @staticmethod
    def _w16(memory: GuestMemory, address: int, value: int) -> None:
        try:
            memory.write_u16(address, value)
        except GuestMemoryError as e:
            raise VirtqueueError(str(e)) from e
