"""Boot structures against golden files (regenerate with VIRTKIT_UPDATE_GOLDEN=1 after a deliberate change)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from guestkernels import make_bzimage, make_pvh_elf
from tests.support.memory import bytearray_memory

from virtkit.arch.x86_64 import layout
from virtkit.arch.x86_64.boot_params import build_zero_page
from virtkit.arch.x86_64.bzimage import parse_bzimage
from virtkit.arch.x86_64.e820 import E820_RAM, E820_RESERVED, E820Entry, e820_map
from virtkit.arch.x86_64.loader import (
    encode_cmdline,
    load_kernel,
    place_initrd,
    read_kernel,
    write_boot_info,
)
from virtkit.arch.x86_64.pvh import START_INFO_MAGIC, build_start_info, has_pvh_entry, parse_pvh_elf
from virtkit.errors import ConfigError

GOLDEN = Path(__file__).parent / "golden"
MIB = 1 << 20


def rows(data: bytes) -> str:
    """Non-zero 16-byte rows as 'offset: hex', so a diff shows which field moved."""
    lines = []
    for off in range(0, len(data), 16):
        chunk = data[off : off + 16]
        if any(chunk):
            lines.append(f"{off:04x}: {chunk.hex(' ')}")
    return "\n".join(lines) + "\n"


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("VIRTKIT_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from its golden file"


def test_e820_map_for_64_mib() -> None:
    entries = e820_map(layout.ram_layout(64 * MIB))
    assert entries == [
        E820Entry(0, 0x9FC00, E820_RAM),
        E820Entry(0x9FC00, 0x400, E820_RESERVED),
        E820Entry(0xF0000, 0x10000, E820_RESERVED),
        E820Entry(0x100000, 63 * MIB, E820_RAM),
    ]


def test_e820_map_splits_around_the_mmio_gap() -> None:
    entries = e820_map(layout.ram_layout(4096 * MIB))
    assert entries[-2:] == [
        E820Entry(0x100000, 0xC0000000 - 0x100000, E820_RAM),
        E820Entry(0x100000000, 1024 * MIB, E820_RAM),
    ]


def test_zero_page_golden() -> None:
    kernel = parse_bzimage(make_bzimage(b"\x90" * 0x400, init_size=0x20000))
    zp = build_zero_page(kernel, 0x100000, layout.CMDLINE_START, (0x3FF0000, 0x1234),
                         e820_map(layout.ram_layout(64 * MIB)))  # fmt: skip
    assert len(zp) == 4096
    assert struct.unpack_from("<I", zp, 0x202)[0] == 0x53726448  # the header was copied
    assert zp[0x210] == 0xFF and zp[0x1E8] == 4
    assert struct.unpack_from("<III", zp, 0x218) == (0x3FF0000, 0x1234, 0)
    assert struct.unpack_from("<I", zp, 0x228)[0] == layout.CMDLINE_START
    golden("zero_page.txt", rows(zp))


def test_start_info_golden() -> None:
    start_info, modlist, memmap = build_start_info(
        layout.CMDLINE_START, layout.PVH_MEMMAP, e820_map(layout.ram_layout(64 * MIB)), layout.PVH_MODLIST,
        (0x3FF0000, 0x1234),
    )  # fmt: skip
    assert len(start_info) == 56 and len(modlist) == 32 and len(memmap) == 4 * 24
    magic, version, _flags, modules = struct.unpack_from("<IIII", start_info)
    assert (magic, version, modules) == (START_INFO_MAGIC, 1, 1)
    golden("start_info.txt", rows(start_info) + "--\n" + rows(modlist) + "--\n" + rows(memmap))


def test_bzimage_boot_writes_zero_page_cmdline_tables_and_enters_at_startup_64() -> None:
    mem = bytearray_memory(layout.ram_layout(64 * MIB))
    kernel = parse_bzimage(make_bzimage(b"\xf4" * 0x400, init_size=0x8000))
    load_kernel(mem, kernel)
    initrd = place_initrd(mem, kernel, b"INITRD" * 100)
    entry = write_boot_info(mem, kernel, encode_cmdline(kernel, "console=ttyS0 quiet"), initrd,
                            e820_map(layout.ram_layout(64 * MIB)))  # fmt: skip
    assert (entry.rip, entry.long_mode, entry.rsi, entry.protocol) == (0x100200, True, layout.ZERO_PAGE, "linux64")
    assert mem.read(0x100000, 4) == b"\xf4" * 4
    assert initrd == (64 * MIB - 4096, 600)
    assert mem.read(initrd[0], 6) == b"INITRD"
    assert mem.read(layout.CMDLINE_START, 20) == b"console=ttyS0 quiet\0"
    assert mem.read_u32(layout.ZERO_PAGE + 0x218) == initrd[0]
    assert mem.read_u64(layout.PML4_START) == layout.PDPT_START | 3
    assert mem.read_u64(layout.PD_START + 8) == 0x200000 | 0x83
    assert mem.read_u64(layout.GDT_START + 0x10) == 0x00AF9B000000FFFF  # 64-bit code at __BOOT_CS


def test_bzimage_without_64_bit_entry_uses_the_32_bit_protocol() -> None:
    mem = bytearray_memory(layout.ram_layout(64 * MIB))
    kernel = parse_bzimage(make_bzimage(b"\xf4" * 0x400, xloadflags=0))
    entry = write_boot_info(mem, kernel, b"\0", None, e820_map(layout.ram_layout(64 * MIB)))
    assert (entry.rip, entry.long_mode, entry.rsi) == (0x100000, False, layout.ZERO_PAGE)
    assert mem.read_u64(layout.GDT_START + 0x10) == 0x00CF9B000000FFFF  # 32-bit flat code


def test_pvh_boot_loads_segments_writes_start_info_and_enters_with_ebx() -> None:
    mem = bytearray_memory(layout.ram_layout(64 * MIB))
    kernel = parse_pvh_elf(make_pvh_elf(b"\xf4" * 32, entry=0x100010, bss=0x100))
    mem.write(0x100020, b"\xff" * 0x100)  # the bss must come out zeroed
    load_kernel(mem, kernel)
    assert mem.read(0x100020, 0x100) == bytes(0x100)
    initrd = place_initrd(mem, kernel, b"x" * 5000)
    entry = write_boot_info(mem, kernel, b"pvh\0", initrd, e820_map(layout.ram_layout(64 * MIB)))
    assert (entry.rip, entry.long_mode, entry.rbx, entry.protocol) == (0x100010, False, layout.PVH_START_INFO, "pvh")
    assert mem.read_u32(layout.PVH_START_INFO) == START_INFO_MAGIC
    assert mem.read_u64(layout.PVH_START_INFO + 24) == layout.CMDLINE_START
    modlist = mem.read_u64(layout.PVH_START_INFO + 16)
    assert (mem.read_u64(modlist), mem.read_u64(modlist + 8)) == initrd


def test_command_line_over_the_kernel_limit_is_refused() -> None:
    kernel = parse_bzimage(make_bzimage(b"\x90" * 0x400, cmdline_size=16))
    assert encode_cmdline(kernel, "x" * 16) == b"x" * 16 + b"\0"
    with pytest.raises(ConfigError, match="at most 16") as err:
        encode_cmdline(kernel, "x" * 17)
    assert err.value.hint


def test_initrd_larger_than_ram_is_refused() -> None:
    mem = bytearray_memory(layout.ram_layout(32 * MIB))
    kernel = parse_bzimage(make_bzimage(b"\x90" * 0x400))
    with pytest.raises(ConfigError, match="does not fit") as err:
        place_initrd(mem, kernel, bytes(40 * MIB))
    assert "--memory" in (err.value.hint or "")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"#!/bin/sh\necho not a kernel\n", "not a kernel"),
        (b"", "not a kernel"),
        (b"\x7fELF" + bytes(60), "damaged ELF"),
    ],
)
def test_files_that_are_not_kernels_are_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "kernel"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        read_kernel(path)


def test_missing_kernel_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read kernel"):
        read_kernel(tmp_path / "nope")


def test_elf_without_pvh_note_is_refused() -> None:
    with pytest.raises(ConfigError, match="PVH") as err:
        parse_pvh_elf(make_pvh_elf(b"\x90", note=False))
    assert "CONFIG_PVH" in (err.value.hint or "")


def test_damaged_bzimage_headers_are_refused() -> None:
    good = bytearray(make_bzimage(b"\x90" * 0x400))
    bad_flag = bytearray(good)
    bad_flag[0x1FE] = 0
    with pytest.raises(ConfigError, match="boot_flag"):
        parse_bzimage(bytes(bad_flag))
    old = bytearray(good)
    struct.pack_into("<H", old, 0x206, 0x0204)
    with pytest.raises(ConfigError, match=r"2\.06"):
        parse_bzimage(bytes(old))
    with pytest.raises(ConfigError, match="truncated"):
        parse_bzimage(bytes(good[:0x600]))


def test_pvh_entry_is_detected_without_loading_the_kernel() -> None:
    assert has_pvh_entry(make_pvh_elf(b"\x90", entry=0x100000))
    assert not has_pvh_entry(make_pvh_elf(b"\x90", note=False))
    assert not has_pvh_entry(b"\x7fELF damaged")


def test_pvh_note_with_a_32_bit_descriptor() -> None:
    assert parse_pvh_elf(make_pvh_elf(b"\x90" * 8, entry=0x100004, desc_size=4)).entry == 0x100004


def test_a_relocatable_kernel_needs_room_at_its_preferred_address() -> None:
    raw = bytearray(make_bzimage(b"\x90" * 0x400, init_size=0x2000000))
    struct.pack_into("<Q", raw, 0x258, 0x1000000)  # pref_address: 16 MiB, as distribution kernels say
    assert parse_bzimage(bytes(raw)).memory_end == 0x100000 + 0x2000000  # not relocatable: in place
    raw[0x234] = 1
    kernel = parse_bzimage(bytes(raw))
    assert kernel.memory_end == 0x1000000 + 0x2000000  # decompressed at 16 MiB
    mem = bytearray_memory(layout.ram_layout(64 * MIB))
    with pytest.raises(ConfigError, match="does not fit"):
        place_initrd(mem, kernel, bytes(17 * MIB))  # would overlap the decompressed kernel
    assert place_initrd(mem, kernel, bytes(15 * MIB))[0] >= 48 * MIB
