"""The zero page (struct boot_params) a bzImage kernel reads at entry: setup header, command line, initrd, e820."""

from __future__ import annotations

import struct

from virtkit.arch.x86_64.bzimage import CAN_USE_HEAP, HEADER_START, BzImage
from virtkit.arch.x86_64.e820 import E820Entry

ZERO_PAGE_SIZE = 4096
E820_MAX = 128
# offsets into struct boot_params
ACPI_RSDP_ADDR = 0x070  # boot protocol 2.14; older kernels ignore it and scan the BIOS area
EXT_RAMDISK_IMAGE = 0x0C0
EXT_RAMDISK_SIZE = 0x0C4
EXT_CMD_LINE_PTR = 0x0C8
E820_ENTRIES = 0x1E8
VID_MODE = 0x1FA
TYPE_OF_LOADER = 0x210
LOADFLAGS = 0x211
CODE32_START = 0x214
RAMDISK_IMAGE = 0x218
RAMDISK_SIZE = 0x21C
HEAP_END_PTR = 0x224
CMD_LINE_PTR = 0x228
E820_TABLE = 0x2D0
LOADER_UNDEFINED = 0xFF


def build_zero_page(
    kernel: BzImage,
    load_address: int,
    cmdline_address: int,
    initrd: tuple[int, int] | None,
    e820: list[E820Entry],
    rsdp: int = 0,
) -> bytes:
    if len(e820) > E820_MAX:
        raise ValueError(f"{len(e820)} e820 entries exceed {E820_MAX}")
    zp = bytearray(ZERO_PAGE_SIZE)
    zp[HEADER_START : HEADER_START + len(kernel.header)] = kernel.header
    zp[TYPE_OF_LOADER] = LOADER_UNDEFINED
    zp[LOADFLAGS] |= CAN_USE_HEAP
    struct.pack_into("<H", zp, HEAP_END_PTR, 0xFE00)
    struct.pack_into("<H", zp, VID_MODE, 0xFFFF)  # "normal" text mode
    struct.pack_into("<I", zp, CODE32_START, load_address)
    struct.pack_into("<I", zp, CMD_LINE_PTR, cmdline_address & 0xFFFFFFFF)
    struct.pack_into("<I", zp, EXT_CMD_LINE_PTR, cmdline_address >> 32)
    if initrd is not None:
        address, size = initrd
        struct.pack_into("<II", zp, RAMDISK_IMAGE, address & 0xFFFFFFFF, size & 0xFFFFFFFF)
        struct.pack_into("<II", zp, EXT_RAMDISK_IMAGE, address >> 32, size >> 32)
    struct.pack_into("<Q", zp, ACPI_RSDP_ADDR, rsdp)
    zp[E820_ENTRIES] = len(e820)
    for i, entry in enumerate(e820):
        zp[E820_TABLE + 20 * i : E820_TABLE + 20 * (i + 1)] = entry.pack()
    return bytes(zp)
