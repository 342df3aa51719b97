"""The boot GDT and the segment registers loaded from it.

Selectors follow the Linux boot protocol: __BOOT_CS = 0x10, __BOOT_DS = 0x18, then a TSS at 0x20 (KVM
wants a usable TR).
"""

from __future__ import annotations

import struct

from virtkit.hypervisor.base import Segment

BOOT_CS = 0x10
BOOT_DS = 0x18
BOOT_TSS = 0x20


def gdt_entry(flags: int, base: int, limit: int) -> int:
    """Encode a descriptor from Firecracker-style (flags, base, limit)."""
    return (
        ((base & 0xFF000000) << (56 - 24))
        | ((flags & 0x0000F0FF) << 40)
        | ((limit & 0x000F0000) << (48 - 16))
        | ((base & 0x00FFFFFF) << 16)
        | (limit & 0x0000FFFF)
    )


def boot_gdt(long_mode: bool) -> list[int]:
    code = 0xA09B if long_mode else 0xC09B  # L=1 for 64-bit code, D=1 for 32-bit
    return [
        0,
        0,
        gdt_entry(code, 0, 0xFFFFF),
        gdt_entry(0xC093, 0, 0xFFFFF),
        gdt_entry(0x808B, 0, 0xFFFFF),
    ]


def pack_gdt(entries: list[int]) -> bytes:
    return b"".join(struct.pack("<Q", e) for e in entries)


def segment_from_entry(selector: int, entry: int) -> Segment:
    """What the CPU's hidden segment state holds after loading ``selector`` (as kvm_segment)."""
    limit = (entry & 0xFFFF) | ((entry >> 32) & 0xF0000)
    granular = (entry >> 55) & 1
    return Segment(
        base=((entry >> 16) & 0xFFFFFF) | ((entry >> 32) & 0xFF000000),
        limit=(limit << 12) | 0xFFF if granular else limit,
        selector=selector,
        type=(entry >> 40) & 0xF,
        present=(entry >> 47) & 1,
        dpl=(entry >> 45) & 3,
        db=(entry >> 54) & 1,
        s=(entry >> 44) & 1,
        l=(entry >> 53) & 1,
        g=granular,
        avl=(entry >> 52) & 1,
        unusable=0 if (entry >> 47) & 1 else 1,
    )
