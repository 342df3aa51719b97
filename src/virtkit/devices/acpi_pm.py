"""ACPI PM1 event and control registers (legacy, fixed-hardware ACPI): how a guest powers itself off, and
the fixed power button that asks it to.

Ports: PM1a_EVT (status, enable; 2 bytes each) then PM1a_CNT (2 bytes). Writing SLP_EN with SLP_TYP = the
DSDT's ``\\_S5_`` value to PM1a_CNT enters S5: the machine powers off. Pressing the power button sets
PWRBTN_STS; while an enabled status bit is set the SCI line is asserted (level-triggered, like the chipset's).
SCI_EN always reads as set (there is no SMI to switch modes).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from virtkit.devices.trigger import Trigger

PORT_BASE = 0x600
PORT_LENGTH = 6
PM1_EVT = PORT_BASE
PM1_CNT = PORT_BASE + 4
PWRBTN_STS = 1 << 8  # in PM1_STS, and PWRBTN_EN at the same bit of PM1_EN
FIXED_EVENTS = 0x0721  # TMR, GBL, PWRBTN, SLPBTN, RTC: the status bits that can raise the SCI
SCI_EN = 0x0001
SLP_EN = 1 << 13
SLP_TYP_SHIFT = 10


class AcpiPm:
    def __init__(self, s5_type: int, on_poweroff: Callable[[], None], sci: Trigger | None = None) -> None:
        self._s5_type = s5_type
        self._on_poweroff = on_poweroff
        self._sci = sci
        self._lock = threading.Lock()
        self.regs = bytearray(PORT_LENGTH)
        self.regs[4] = SCI_EN
        self.sci_level = False

    def _u16(self, at: int) -> int:
        return self.regs[at] | (self.regs[at + 1] << 8)

    def _update_sci(self) -> None:
        level = bool(self._u16(0) & self._u16(2) & FIXED_EVENTS)
        if level != self.sci_level:
            self.sci_level = level
            if self._sci is not None:
                self._sci.set_level(level)

    def press_power_button(self) -> None:
        """The host asks the guest to shut down (what QEMU's system_powerdown does)."""
        with self._lock:
            self.regs[1] |= PWRBTN_STS >> 8
            self._update_sci()

    def read(self, offset: int, size: int) -> bytes:
        with self._lock:
            return bytes(self.regs[offset : offset + size]).ljust(size, b"\xff")

    def write(self, offset: int, data: bytes) -> None:
        poweroff = False
        with self._lock:
            for i, byte in enumerate(data):
                at = offset + i
                if at >= PORT_LENGTH:
                    break
                if at < 2:
                    self.regs[at] &= ~byte & 0xFF  # PM1 status: write 1 to clear
                else:
                    self.regs[at] = byte
            self.regs[4] |= SCI_EN
            control = self._u16(4)
            if control & SLP_EN:
                self.regs[5] &= ~(SLP_EN >> 8) & 0xFF  # SLP_EN always reads as zero
                poweroff = (control >> SLP_TYP_SHIFT) & 7 == self._s5_type
            self._update_sci()
        if poweroff:
            self._on_poweroff()
