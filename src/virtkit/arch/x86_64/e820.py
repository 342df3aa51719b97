"""The e820 memory map the guest is given (boot_params.e820_table or PVH's memmap)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from virtkit.arch.x86_64 import layout

E820_RAM = 1
E820_RESERVED = 2


@dataclass(frozen=True)
class E820Entry:
    address: int
    size: int
    type: int

    def pack(self) -> bytes:
        """struct boot_e820_entry { __u64 addr; __u64 size; __u32 type; } __packed"""
        return struct.pack("<QQI", self.address, self.size, self.type)


def e820_map(ram: list[tuple[int, int]]) -> list[E820Entry]:
    """Low RAM up to the EBDA, the EBDA and BIOS area reserved, then RAM from 1 MiB (and above 4 GiB)."""
    entries = [
        E820Entry(0, layout.EBDA_START, E820_RAM),
        E820Entry(layout.EBDA_START, 0xA0000 - layout.EBDA_START, E820_RESERVED),
        E820Entry(layout.BIOS_START, layout.HIMEM_START - layout.BIOS_START, E820_RESERVED),
    ]
    for address, size in ram:
        start = max(address, layout.HIMEM_START)
        if address + size > start:
            entries.append(E820Entry(start, address + size - start, E820_RAM))
    return entries
