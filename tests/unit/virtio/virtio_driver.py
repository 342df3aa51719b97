"""A tiny virtio driver for unit tests: lays out a split queue in test guest memory and offers chains."""

from __future__ import annotations

import struct

from tests.support.memory import bytearray_memory

from virtkit.memory import GuestMemory
from virtkit.virtio.queue import VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, SplitQueue

DESC, AVAIL, USED, DATA = 0x1000, 0x3000, 0x4000, 0x10000
MEMORY = 0x100000
STRIDE = 0x20000  # a further queue's rings and buffers: base + the same offsets


def memory() -> GuestMemory:
    return bytearray_memory([(0, MEMORY)])


class Driver:
    def __init__(self, mem: GuestMemory, queue: SplitQueue, size: int = 16, base: int = 0) -> None:
        self.mem, self.q, self.size, self.base = mem, queue, size, base
        queue.size, queue.desc_table, queue.avail_ring, queue.used_ring = size, base + DESC, base + AVAIL, base + USED
        queue.ready = True
        self.avail_idx = 0
        self.next_data = base + DATA

    def desc(self, index: int, address: int, length: int, flags: int = 0, nxt: int = 0, table: int = -1) -> None:
        table = self.base + DESC if table < 0 else table
        self.mem.write(table + 16 * index, struct.pack("<QIHH", address, length, flags, nxt))

    def buffer(self, length: int) -> int:
        address = self.next_data
        self.next_data += (length + 15) & ~15
        return address

    def offer(self, head: int) -> None:
        self.mem.write_u16(self.base + AVAIL + 4 + 2 * (self.avail_idx % self.size), head)
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        self.mem.write_u16(self.base + AVAIL + 2, self.avail_idx)

    def chain(self, out: list[bytes], in_lengths: list[int], start: int = 0) -> tuple[int, list[int]]:
        """Descriptors start.. for readable ``out`` buffers then writable ones; returns (head, writable addrs)."""
        parts = [(b, False) for b in out] + [(bytes(n), True) for n in in_lengths]
        addrs = []
        for i, (data, writable) in enumerate(parts):
            address = self.buffer(len(data))
            if not writable:
                self.mem.write(address, data)
            else:
                addrs.append(address)
            flags = (VIRTQ_DESC_F_WRITE if writable else 0) | (VIRTQ_DESC_F_NEXT if i + 1 < len(parts) else 0)
            self.desc(start + i, address, len(data), flags, start + i + 1)
        return start, addrs

    def indirect(self, index: int, table: int, count: int) -> None:
        self.desc(index, table, 16 * count, VIRTQ_DESC_F_INDIRECT)

    def used(self) -> list[tuple[int, int]]:
        idx = self.mem.read_u16(self.base + USED + 2)
        return [struct.unpack("<II", self.mem.read(self.base + USED + 4 + 8 * (i % self.size), 8)) for i in range(idx)]
