"""Minimal ACPI tables so a guest can power off and has a power button: RSDP, XSDT, FACS, FADT (legacy PM1
registers, no SMI so always in ACPI mode, the fixed-hardware power button, SCI on IRQ 9) and a DSDT holding
only ``\\_S5_``. No MADT: interrupt routing stays what it is without ACPI (8259 PIC), which keeps part 1 to
one vCPU; part 2 adds the MADT with SMP.

Linux powers off by writing SLP_TYP(S5) | SLP_EN to PM1a_CNT; the ``AcpiPm`` device turns that into an exit.
"""

from __future__ import annotations

import struct

from virtkit.arch.x86_64 import layout

OEM_ID = b"VIRTKT"
OEM_TABLE_ID = b"VIRTKIT "
CREATOR_ID = b"VKIT"
S5_SLP_TYP = 5
SCI_IRQ = 9
PM1_EVT_LEN = 4
PM1_CNT_LEN = 2

RSDP_ADDRESS = layout.ACPI_START  # in the BIOS area Linux scans, and in e820-reserved memory
XSDT_ADDRESS = RSDP_ADDRESS + 0x40
FACS_ADDRESS = RSDP_ADDRESS + 0x80  # 64-byte aligned, as the spec requires
FADT_ADDRESS = RSDP_ADDRESS + 0x100
DSDT_ADDRESS = RSDP_ADDRESS + 0x300

# FADT flags: WBINVD, PROC_C1, SLP_BUTTON (no fixed sleep button), FIX_RTC (no RTC wake). PWR_BUTTON is clear:
# the power button is the fixed-hardware one in PM1 (PWRBTN_STS/EN), signalled by the SCI.
FADT_FLAGS = (1 << 0) | (1 << 2) | (1 << 5) | (1 << 6)
# IAPC_BOOT_ARCH: legacy devices, no VGA, and no 8042 flag: with it Linux probes the keyboard controller by
# polling port 0x64 ~20 000 times (measured: 20 s of a 25 s nested boot). The i8042's reset line works anyway.
IAPC_BOOT_ARCH = 0x1 | 0x4
# AML: Name (_S5_, Package (0x04) { 0x05, 0x05, Zero, Zero })
S5_AML = bytes([0x08, *b"_S5_", 0x12, 0x08, 0x04, 0x0A, S5_SLP_TYP, 0x0A, S5_SLP_TYP, 0x00, 0x00])


def checksum(data: bytes) -> int:
    return (-sum(data)) & 0xFF


def table(signature: bytes, revision: int, body: bytes) -> bytes:
    header = struct.pack(
        "<4sIBB6s8sI4sI", signature, 36 + len(body), revision, 0, OEM_ID, OEM_TABLE_ID, 1, CREATOR_ID, 1
    )
    raw = bytearray(header + body)
    raw[9] = checksum(bytes(raw))
    return bytes(raw)


def rsdp(xsdt_address: int) -> bytes:
    raw = bytearray(struct.pack("<8sB6sBIIQB3s", b"RSD PTR ", 0, OEM_ID, 2, 0, 36, xsdt_address, 0, b"\0" * 3))
    raw[8] = checksum(bytes(raw[:20]))
    raw[32] = checksum(bytes(raw))
    return bytes(raw)


def facs() -> bytes:
    """The firmware control structure (no header checksum): non-reduced hardware expects one."""
    return struct.pack("<4sIIIIIQB3sI24s", b"FACS", 64, 0, 0, 0, 0, 0, 2, b"\0" * 3, 0, b"\0" * 24)


def fadt(dsdt_address: int, pm1a_evt: int, pm1a_cnt: int, facs_address: int = 0) -> bytes:
    body = bytearray(276 - 36)

    def put(offset: int, fmt: str, *values: int) -> None:
        struct.pack_into(fmt, body, offset - 36, *values)

    put(36, "<I", facs_address)
    put(40, "<I", dsdt_address)
    put(46, "<H", SCI_IRQ)
    put(56, "<I", pm1a_evt)
    put(64, "<I", pm1a_cnt)
    put(88, "<BB", PM1_EVT_LEN, PM1_CNT_LEN)
    put(96, "<HH", 101, 1001)  # no C2, no C3
    put(109, "<H", IAPC_BOOT_ARCH)
    put(112, "<I", FADT_FLAGS)
    put(131, "<B", 0)  # FADT minor version (6.0)
    put(132, "<Q", facs_address)
    put(140, "<Q", dsdt_address)  # X_DSDT; the X_ register blocks are left for the OS to derive
    return table(b"FACP", 6, bytes(body))


def dsdt() -> bytes:
    return table(b"DSDT", 2, S5_AML)


def xsdt(entries: list[int]) -> bytes:
    return table(b"XSDT", 1, b"".join(struct.pack("<Q", e) for e in entries))


def acpi_tables(pm1a_evt: int, pm1a_cnt: int) -> list[tuple[int, bytes]]:
    """(guest address, bytes) for every table; the RSDP is at ``RSDP_ADDRESS``."""
    return [
        (RSDP_ADDRESS, rsdp(XSDT_ADDRESS)),
        (XSDT_ADDRESS, xsdt([FADT_ADDRESS])),
        (FACS_ADDRESS, facs()),
        (FADT_ADDRESS, fadt(DSDT_ADDRESS, pm1a_evt, pm1a_cnt, FACS_ADDRESS)),
        (DSDT_ADDRESS, dsdt()),
    ]
