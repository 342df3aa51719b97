"""ACPI PM1 event and control registers (legacy, fixed-hardware ACPI): how a guest powers itself off.

Ports: PM1a_EVT (status, enable; 2 bytes each) then PM1a_CNT (2 bytes). Writing SLP_EN with SLP_TYP = the
DSDT's ``\\_S5_`` value to PM1a_CNT enters S5: the machine powers off. SCI_EN always reads as set (there is
no SMI to switch modes).
"""

from __future__ import annotations

from collections.abc import Callable

PORT_BASE = 0x600
PORT_LENGTH = 6
PM1_EVT = PORT_BASE
PM1_CNT = PORT_BASE + 4
SCI_EN = 0x0001
SLP_EN = 1 << 13
SLP_TYP_SHIFT = 10


class AcpiPm:
    def __init__(self, s5_type: int, on_poweroff: Callable[[], None]) -> None:
        self._s5_type = s5_type
        self._on_poweroff = on_poweroff
        self.regs = bytearray(PORT_LENGTH)
        self.regs[4] = SCI_EN

    def read(self, offset: int, size: int) -> bytes:
        data = bytes(self.regs[offset : offset + size])
        return data.ljust(size, b"\xff")

    def write(self, offset: int, data: bytes) -> None:
        for i, byte in enumerate(data):
            at = offset + i
            if at >= PORT_LENGTH:
                break
            if at < 2:
                self.regs[at] &= ~byte & 0xFF  # PM1 status: write 1 to clear
            else:
                self.regs[at] = byte
        self.regs[4] |= SCI_EN
        control = self.regs[4] | (self.regs[5] << 8)
        if control & SLP_EN:
            self.regs[5] &= ~(SLP_EN >> 8) & 0xFF  # SLP_EN always reads as zero
            if (control >> SLP_TYP_SHIFT) & 7 == self._s5_type:
                self._on_poweroff()
