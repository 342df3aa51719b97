"""A CMOS/RTC stand-in at ports 0x70-0x71: every register reads 0 (no update in progress, clock at zero).

Without it reads return 0xff and Linux's RTC code sees an update that never ends.
"""

from __future__ import annotations

PORT_BASE = 0x70
PORT_LENGTH = 2


class Cmos:
    def __init__(self) -> None:
        self.index = 0

    def read(self, offset: int, size: int) -> bytes:
        return b"\x00" * size

    def write(self, offset: int, data: bytes) -> None:
        if offset == 0 and data:
            self.index = data[0] & 0x7F
