"""Register state at kernel entry: long mode for the 64-bit boot protocol, flat 32-bit for PVH and the
32-bit boot protocol."""

from __future__ import annotations

from virtkit.arch.x86_64 import layout
from virtkit.arch.x86_64.gdt import BOOT_CS, BOOT_DS, BOOT_TSS, boot_gdt, segment_from_entry
from virtkit.hypervisor.base import DescriptorTable, Registers, SpecialRegisters

CR0_PE = 0x1
CR0_ET = 0x10
CR0_PG = 0x80000000
CR4_PAE = 0x20
EFER_LME = 0x100
EFER_LMA = 0x400

MSR_IA32_MISC_ENABLE = 0x1A0
MSR_MTRR_DEF_TYPE = 0x2FF
MTRR_ENABLE_WRITEBACK = (1 << 11) | 6


def special_registers(long_mode: bool, apic_base: int) -> SpecialRegisters:
    gdt = boot_gdt(long_mode)
    code = segment_from_entry(BOOT_CS, gdt[BOOT_CS >> 3])
    sregs = SpecialRegisters(
        cs=code,
        ds=segment_from_entry(BOOT_DS, gdt[BOOT_DS >> 3]),
        es=segment_from_entry(BOOT_DS, gdt[BOOT_DS >> 3]),
        fs=segment_from_entry(BOOT_DS, gdt[BOOT_DS >> 3]),
        gs=segment_from_entry(BOOT_DS, gdt[BOOT_DS >> 3]),
        ss=segment_from_entry(BOOT_DS, gdt[BOOT_DS >> 3]),
        tr=segment_from_entry(BOOT_TSS, gdt[BOOT_TSS >> 3]),
        gdt=DescriptorTable(layout.GDT_START, len(gdt) * 8 - 1),
        idt=DescriptorTable(layout.IDT_START, 7),
        cr0=CR0_PE | CR0_ET,
        apic_base=apic_base,
    )
    if long_mode:
        sregs.cr0 |= CR0_PG
        sregs.cr3 = layout.PML4_START
        sregs.cr4 = CR4_PAE
        sregs.efer = EFER_LME | EFER_LMA
    return sregs


def entry_registers(entry: int, *, rsi: int = 0, rbx: int = 0) -> Registers:
    """Interrupts off (rflags bit 1 is reserved-set), a small boot stack below the page tables."""
    return Registers(rip=entry, rsi=rsi, rbx=rbx, rsp=layout.BOOT_STACK, rbp=layout.BOOT_STACK, rflags=0x2)


def boot_msrs() -> dict[int, int]:
    return {MSR_IA32_MISC_ENABLE: 1, MSR_MTRR_DEF_TYPE: MTRR_ENABLE_WRITEBACK}
