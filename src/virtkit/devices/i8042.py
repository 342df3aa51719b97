"""The bit of the i8042 keyboard controller a microVM needs: the CPU reset line (command 0xFE).

Ports 0x60 (data) and 0x64 (status/command) are one range of 5 so 0x61-0x63 (PC speaker, NMI status)
read as zero here instead of 0xff.
"""

from __future__ import annotations

from collections.abc import Callable

DATA = 0x0
COMMAND = 0x4
CMD_READ_CTR = 0x20
CMD_WRITE_CTR = 0x60
CMD_RESET_CPU = 0xFE
STATUS_OUT_FULL = 0x01
PORT_BASE = 0x60
PORT_LENGTH = 5


class I8042:
    def __init__(self, on_reset: Callable[[], None]) -> None:
        self._on_reset = on_reset
        self.control = 0x00
        self._out: int | None = None
        self._pending_cmd: int | None = None

    def read(self, offset: int, size: int) -> bytes:
        if offset == COMMAND:
            value = STATUS_OUT_FULL if self._out is not None else 0
        elif offset == DATA:
            value = self._out if self._out is not None else 0
            self._out = None
        else:
            value = 0
        return bytes([value]) + b"\x00" * (size - 1)

    def write(self, offset: int, data: bytes) -> None:
        if not data:
            return
        value = data[0]
        if offset == COMMAND:
            if value == CMD_RESET_CPU:
                self._on_reset()
            elif value == CMD_READ_CTR:
                self._out = self.control
            elif value == CMD_WRITE_CTR:
                self._pending_cmd = value
        elif offset == DATA and self._pending_cmd == CMD_WRITE_CTR:
            self.control = value
            self._pending_cmd = None
