"""Direct kernel boot: recognise the kernel, place it, the command line and the initrd in guest memory,
write what the entry protocol promises (zero page or start_info, GDT, page tables) and say how to enter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from virtkit.arch.x86_64 import layout
from virtkit.arch.x86_64.boot_params import build_zero_page
from virtkit.arch.x86_64.bzimage import ENTRY64_OFFSET, LOAD_ADDRESS, BzImage, looks_like_bzimage, parse_bzimage
from virtkit.arch.x86_64.e820 import E820Entry
from virtkit.arch.x86_64.gdt import boot_gdt, pack_gdt
from virtkit.arch.x86_64.paging import identity_tables
from virtkit.arch.x86_64.pvh import (
    PVH_CMDLINE_SIZE,
    PvhKernel,
    build_start_info,
    looks_like_elf,
    parse_pvh_elf,
)
from virtkit.errors import ConfigError
from virtkit.memory import GuestMemory

Kernel = BzImage | PvhKernel
PAGE = 4096
MIB = 1 << 20


@dataclass(frozen=True)
class Entry:
    """How the boot vCPU enters the kernel."""

    rip: int
    long_mode: bool
    rsi: int = 0
    rbx: int = 0
    protocol: str = ""


def read_kernel(path: Path) -> Kernel:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read kernel {path}: {e.strerror}", hint="pass an existing kernel file") from e
    if looks_like_bzimage(data):
        return parse_bzimage(data, str(path))
    if looks_like_elf(data):
        return parse_pvh_elf(data, str(path))
    raise ConfigError(
        f"{path} is not a kernel: neither a bzImage (Linux boot protocol) nor an ELF vmlinux",
        hint="pass arch/x86/boot/bzImage (a distribution's vmlinuz) or a vmlinux built with CONFIG_PVH=y",
    )


def cmdline_limit(kernel: Kernel) -> int:
    return kernel.cmdline_size if isinstance(kernel, BzImage) else PVH_CMDLINE_SIZE


def encode_cmdline(kernel: Kernel, cmdline: str) -> bytes:
    raw = cmdline.encode()
    limit = min(cmdline_limit(kernel), layout.CMDLINE_MAX - 1)
    if len(raw) > limit:
        raise ConfigError(
            f"the kernel command line is {len(raw)} bytes; this kernel accepts at most {limit}",
            hint="shorten --cmdline",
        )
    if b"\0" in raw:
        raise ConfigError("the kernel command line contains a NUL byte", hint="remove it from --cmdline")
    return raw + b"\0"


def kernel_span(kernel: Kernel) -> tuple[int, int]:
    if isinstance(kernel, BzImage):
        return LOAD_ADDRESS, kernel.memory_end
    return kernel.start, kernel.end


def check_kernel_fits(kernel: Kernel, low_ram_end: int, name: str = "kernel") -> None:
    start, end = kernel_span(kernel)
    if start < layout.HIMEM_START or end > low_ram_end:
        raise ConfigError(
            f"{name} needs guest RAM {start:#x}-{end:#x} ({(end + MIB - 1) // MIB} MiB) but the machine has "
            f"{low_ram_end // MIB} MiB below the MMIO gap",
            hint="give the machine more memory (--memory)",
        )


def initrd_address(kernel: Kernel, size: int, low_ram_end: int, total_ram: int, name: str = "initrd") -> int:
    """The top of RAM below 4 GiB (and below the kernel's initrd_addr_max), page-aligned, above the kernel."""
    top = min(low_ram_end, layout.MMIO_GAP_START)
    if isinstance(kernel, BzImage):
        top = min(top, kernel.initrd_addr_max + 1)
    address = (top - size) & ~(PAGE - 1)
    _, kernel_end = kernel_span(kernel)
    if address < kernel_end:
        raise ConfigError(
            f"{name} is {size / MIB:.1f} MiB; it does not fit in the machine's {total_ram // MIB} MiB of RAM "
            f"above the kernel (which ends at {kernel_end / MIB:.1f} MiB)",
            hint="give the machine more memory (--memory) or use a smaller initrd",
        )
    return address


def load_kernel(memory: GuestMemory, kernel: Kernel, name: str = "kernel") -> None:
    check_kernel_fits(kernel, memory.regions[0].end, name)
    if isinstance(kernel, BzImage):
        memory.write(LOAD_ADDRESS, kernel.payload)
        return
    for segment in kernel.segments:
        memory.write(segment.address, segment.data)
        tail = segment.memory_size - len(segment.data)
        if tail > 0:
            memory.write(segment.address + len(segment.data), bytes(tail))


def place_initrd(memory: GuestMemory, kernel: Kernel, data: bytes, name: str = "initrd") -> tuple[int, int]:
    """Put the initrd at the top of RAM below 4 GiB (and below the kernel's initrd_addr_max)."""
    address = initrd_address(kernel, len(data), memory.regions[0].end, memory.size, name)
    memory.write(address, data)
    return address, len(data)


def write_boot_info(
    memory: GuestMemory,
    kernel: Kernel,
    cmdline: bytes,
    initrd: tuple[int, int] | None,
    e820: list[E820Entry],
    rsdp: int = 0,
) -> Entry:
    memory.write(layout.CMDLINE_START, cmdline)
    if isinstance(kernel, BzImage):
        memory.write(layout.ZERO_PAGE, build_zero_page(kernel, LOAD_ADDRESS, layout.CMDLINE_START, initrd, e820, rsdp))
        long_mode = kernel.entry64
        write_cpu_tables(memory, long_mode)
        if long_mode:
            return Entry(LOAD_ADDRESS + ENTRY64_OFFSET, True, rsi=layout.ZERO_PAGE, protocol="linux64")
        return Entry(LOAD_ADDRESS, False, rsi=layout.ZERO_PAGE, protocol="linux32")
    if len(e820) > layout.PVH_MEMMAP_MAX:
        raise ValueError("too many memory map entries for the PVH start_info")
    start_info, modlist, memmap = build_start_info(
        layout.CMDLINE_START, layout.PVH_MEMMAP, e820, layout.PVH_MODLIST, initrd, rsdp
    )
    memory.write(layout.PVH_START_INFO, start_info)
    memory.write(layout.PVH_MODLIST, modlist)
    memory.write(layout.PVH_MEMMAP, memmap)
    write_cpu_tables(memory, long_mode=False)
    return Entry(kernel.entry, False, rbx=layout.PVH_START_INFO, protocol="pvh")


def write_cpu_tables(memory: GuestMemory, long_mode: bool) -> None:
    memory.write(layout.GDT_START, pack_gdt(boot_gdt(long_mode)))
    memory.write(layout.IDT_START, bytes(8))
    if long_mode:
        for address, table in identity_tables():
            memory.write(address, table)
