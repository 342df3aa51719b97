"""Guest physical memory made of regions, each backed by an anonymous mmap (or a bytearray in tests:
tests/support/memory.py).

Accesses are by guest physical address and must lie inside one region; anything else raises
``GuestMemoryError`` so a device can refuse a hostile address instead of touching host memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import mmap
import struct
from dataclasses import dataclass

from virtkit.errors import HostError, VirtkitError


class GuestMemoryError(VirtkitError):
    """A guest physical address range is not backed by guest RAM."""


@dataclass
class Region:
    guest_address: int
    size: int
    buffer: memoryview | bytearray
    host_address: int = 0  # 0 for bytearray-backed (test) regions

    @property
    def end(self) -> int:
        return self.guest_address + self.size


HUGE_PAGE = 2 << 20
_U16, _U32, _U64 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q")


class GuestMemory:
    def __init__(self, regions: list[Region]) -> None:
        ordered = sorted(regions, key=lambda r: r.guest_address)
        for a, b in itertools.pairwise(ordered):
            if a.end > b.guest_address:
                raise ValueError(f"memory regions overlap at {b.guest_address:#x}")
        self.regions = ordered
        self._anchors: list[ctypes.c_char] = []
        self._mappings: list[mmap.mmap] = []

    @classmethod
    def anonymous(cls, layout: list[tuple[int, int]]) -> GuestMemory:
        """Back each ``(guest_address, size)`` with a private anonymous mapping the host can give.

        Each region starts on a 2 MiB boundary and asks for transparent huge pages, so the hypervisor can map
        guest memory with large pages (measured under nested KVM, where every small-page fault is costly).
        """
        regions: list[Region] = []
        anchors: list[ctypes.c_char] = []
        mappings: list[mmap.mmap] = []
        try:
            for guest_address, size in layout:
                try:
                    raw = mmap.mmap(-1, size + HUGE_PAGE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
                except OSError as e:
                    raise HostError(
                        f"cannot map {size >> 20} MiB of guest memory: {e.strerror}",
                        hint="give the machine less memory (--memory-mib)",
                    ) from e
                mappings.append(raw)
                with contextlib.suppress(OSError, AttributeError):
                    raw.madvise(mmap.MADV_HUGEPAGE)
                anchor = ctypes.c_char.from_buffer(raw)
                anchors.append(anchor)
                offset = -ctypes.addressof(anchor) % HUGE_PAGE
                view = memoryview(raw)[offset : offset + size]
                regions.append(Region(guest_address, size, view, ctypes.addressof(anchor) + offset))
        except BaseException:
            cls._release(regions, anchors, mappings)
            raise
        memory = cls(regions)
        memory._anchors, memory._mappings = anchors, mappings
        return memory

    @staticmethod
    def _release(regions: list[Region], anchors: list[ctypes.c_char], mappings: list[mmap.mmap]) -> None:
        for r in regions:
            if isinstance(r.buffer, memoryview):
                r.buffer.release()
        anchors.clear()  # the buffer exports must go before the mappings can close
        for m in mappings:
            with contextlib.suppress(BufferError):  # a view still held somewhere: the GC unmaps it later
                m.close()
        mappings.clear()

    @property
    def size(self) -> int:
        return sum(r.size for r in self.regions)

    def _locate(self, address: int, length: int) -> tuple[Region, int]:
        if length < 0 or address < 0:
            raise GuestMemoryError(f"invalid guest range {address:#x}+{length:#x}")
        for r in self.regions:
            if r.guest_address <= address and address + length <= r.end:
                return r, address - r.guest_address
        raise GuestMemoryError(f"guest range {address:#x}+{length:#x} is not in guest RAM")

    def contains(self, address: int, length: int) -> bool:
        try:
            self._locate(address, length)
        except GuestMemoryError:
            return False
        return True

    def view(self, address: int, length: int) -> memoryview:
        region, offset = self._locate(address, length)
        return memoryview(region.buffer)[offset : offset + length]

    def read(self, address: int, length: int) -> bytes:
        region, offset = self._locate(address, length)
        return bytes(region.buffer[offset : offset + length])

    def write(self, address: int, data: bytes | bytearray | memoryview) -> None:
        region, offset = self._locate(address, len(data))
        region.buffer[offset : offset + len(data)] = data

    def read_u16(self, address: int) -> int:
        return int(_U16.unpack(self.read(address, 2))[0])

    def read_u32(self, address: int) -> int:
        return int(_U32.unpack(self.read(address, 4))[0])

    def read_u64(self, address: int) -> int:
        return int(_U64.unpack(self.read(address, 8))[0])

    def write_u16(self, address: int, value: int) -> None:
        self.write(address, _U16.pack(value))

    def write_u32(self, address: int, value: int) -> None:
        self.write(address, _U32.pack(value))

    def write_u64(self, address: int, value: int) -> None:
        self.write(address, _U64.pack(value))

    def close(self) -> None:
        self._release(self.regions, self._anchors, self._mappings)
