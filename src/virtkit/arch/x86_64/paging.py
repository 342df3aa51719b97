"""Identity-mapped page tables for entering a kernel in long mode: the first 4 GiB with 2 MiB pages."""

from __future__ import annotations

import struct

from virtkit.arch.x86_64 import layout

PRESENT_RW = 0x3
PAGE_SIZE_2M = 0x80
IDENTITY_GIB = 4


def identity_tables() -> list[tuple[int, bytes]]:
    """(guest address, bytes) for PML4, PDPT and the page directories."""
    pml4 = struct.pack("<Q", layout.PDPT_START | PRESENT_RW).ljust(4096, b"\0")
    pdpt = b"".join(struct.pack("<Q", (layout.PD_START + 4096 * i) | PRESENT_RW) for i in range(IDENTITY_GIB)).ljust(
        4096, b"\0"
    )
    pds = b"".join(struct.pack("<Q", (i << 21) | PRESENT_RW | PAGE_SIZE_2M) for i in range(512 * IDENTITY_GIB))
    return [(layout.PML4_START, pml4), (layout.PDPT_START, pdpt), (layout.PD_START, pds)]
