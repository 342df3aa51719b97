"""Where things go in guest physical memory (the same choices as Firecracker and Cloud Hypervisor)."""

from __future__ import annotations

GDT_START = 0x500
IDT_START = 0x520
PVH_START_INFO = 0x6000  # struct hvm_start_info, then the memory map
PVH_MODLIST = 0x6040  # one module: the initrd
PVH_MEMMAP = 0x6080
PVH_MEMMAP_MAX = 128
ZERO_PAGE = 0x7000  # struct boot_params
BOOT_STACK = 0x8FF0
PML4_START = 0x9000
PDPT_START = 0xA000
PD_START = 0xB000  # four page directories: the first 4 GiB identity-mapped with 2 MiB pages
CMDLINE_START = 0x20000
CMDLINE_MAX = 0x10000
EBDA_START = 0x9FC00
BIOS_START = 0xF0000
ACPI_START = 0xF0000  # RSDP and tables, in the e820-reserved BIOS area
HIMEM_START = 0x100000  # 1 MiB: kernels load here or above
MMIO_GAP_START = 0xC0000000  # 3 GiB: devices and the IOAPIC/LAPIC live between here and 4 GiB
MMIO_GAP_END = 0x100000000
MIN_MEMORY = 32 << 20


def ram_layout(memory_size: int) -> list[tuple[int, int]]:
    """Guest RAM as (address, size) regions: below the MMIO gap, and the rest above 4 GiB."""
    if memory_size <= MMIO_GAP_START:
        return [(0, memory_size)]
    return [(0, MMIO_GAP_START), (MMIO_GAP_END, memory_size - MMIO_GAP_START)]
