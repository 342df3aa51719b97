"""Uncompressed ELF kernels (vmlinux) entered through PVH: the XEN_ELFNOTE_PHYS32_ENTRY note and
``struct hvm_start_info`` (xen/include/public/arch-x86/hvm/start_info.h).

The PVH entry is 32-bit protected mode with paging off and %ebx pointing at the start_info; it is also
how PVM guest kernels are started.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from virtkit.arch.x86_64.e820 import E820Entry
from virtkit.errors import ConfigError

if TYPE_CHECKING:
    from elftools.elf.elffile import ELFFile

XEN_ELFNOTE_PHYS32_ENTRY = 18
START_INFO_MAGIC = 0x336EC578
START_INFO_VERSION = 1
# Linux's COMMAND_LINE_SIZE on x86 (the PVH path has no header that says otherwise)
PVH_CMDLINE_SIZE = 2048


@dataclass(frozen=True)
class Segment:
    address: int  # physical load address (p_paddr)
    data: bytes
    memory_size: int  # p_memsz: the tail past ``data`` is zeroed


@dataclass(frozen=True)
class PvhKernel:
    entry: int
    segments: tuple[Segment, ...]

    @property
    def end(self) -> int:
        return max(s.address + s.memory_size for s in self.segments)

    @property
    def start(self) -> int:
        return min(s.address for s in self.segments)


def looks_like_elf(data: bytes) -> bool:
    return data[:4] == b"\x7fELF"


def _pvh_entry(elf: ELFFile) -> int | None:
    from elftools.elf.segments import NoteSegment

    for segment in elf.iter_segments():
        if not isinstance(segment, NoteSegment):
            continue
        for note in segment.iter_notes():
            kind: object = note["n_type"]  # an int: pyelftools has no name for Xen's note types
            if note["n_name"] == "Xen" and kind == XEN_ELFNOTE_PHYS32_ENTRY:
                desc = note["n_desc"]
                raw = desc if isinstance(desc, bytes) else str(desc).encode("latin-1")
                if len(raw) >= 8:
                    return int(struct.unpack_from("<Q", raw)[0])
                if len(raw) >= 4:
                    return int(struct.unpack_from("<I", raw)[0])
    return None


def has_pvh_entry(data: bytes) -> bool:
    """True when the ELF carries XEN_ELFNOTE_PHYS32_ENTRY (QEMU's ``-kernel`` and our loader boot it via PVH)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        return _pvh_entry(ELFFile(io.BytesIO(data))) is not None
    except (ELFError, struct.error, ValueError):
        return False


def parse_pvh_elf(data: bytes, name: str = "kernel") -> PvhKernel:
    # imported here: pyelftools costs a quarter of the VMM's start-up and bzImage boots never need it
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        elf = ELFFile(io.BytesIO(data))
        if elf["e_machine"] not in ("EM_X86_64", "EM_386"):
            raise ConfigError(f"{name} is an ELF file for {elf['e_machine']}, not x86")
        if elf["e_type"] != "ET_EXEC":
            raise ConfigError(f"{name} is an ELF {elf['e_type']}, not an executable kernel image")
        entry = _pvh_entry(elf)
        segments = tuple(
            Segment(s["p_paddr"], s.data(), s["p_memsz"])
            for s in elf.iter_segments()
            if s["p_type"] == "PT_LOAD" and s["p_memsz"] > 0
        )
    except (ELFError, struct.error, ValueError) as e:
        raise ConfigError(f"{name} is a damaged ELF file: {e}") from e
    if entry is None:
        raise ConfigError(
            f"{name} is an ELF kernel without a PVH entry (no XEN_ELFNOTE_PHYS32_ENTRY note)",
            hint="build it with CONFIG_PVH=y, or boot the bzImage instead",
        )
    if not segments:
        raise ConfigError(f"{name} has no loadable segments")
    return PvhKernel(entry, segments)


def build_start_info(
    cmdline_address: int,
    memmap_address: int,
    memmap: list[E820Entry],
    modlist_address: int,
    initrd: tuple[int, int] | None,
    rsdp: int = 0,
) -> tuple[bytes, bytes, bytes]:
    """The start_info, its module list and its memory map, each to be written at its own address."""
    start_info = struct.pack(
        "<IIIIQQQQII",
        START_INFO_MAGIC,
        START_INFO_VERSION,
        0,  # flags
        1 if initrd else 0,  # nr_modules
        modlist_address if initrd else 0,
        cmdline_address,
        rsdp,
        memmap_address,
        len(memmap),
        0,
    )
    modlist = struct.pack("<QQQQ", initrd[0], initrd[1], 0, 0) if initrd else b""
    table = b"".join(struct.pack("<QQII", e.address, e.size, e.type, 0) for e in memmap)
    return start_info, modlist, table
