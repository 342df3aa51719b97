"""A type-0 PCI configuration space (PCI Local Bus 3.0 section 6.1) with 32-bit memory BARs the guest may
size and move, and a capability list. Only the registers a driver writes are writable."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

COMMAND = 0x04
STATUS = 0x06
BAR0 = 0x10
CAPABILITIES = 0x34
INTERRUPT_LINE = 0x3C
COMMAND_MEMORY = 1 << 1
COMMAND_INTX_DISABLE = 1 << 10
STATUS_CAP_LIST = 1 << 4
CONFIG_SIZE = 256
CAP_START = 0x40


@dataclass
class Bar:
    size: int  # a power of two, at least 16
    address: int


class PciConfig:
    def __init__(
        self, vendor: int, device: int, class_code: int, revision: int = 0, subsystem: tuple[int, int] = (0, 0)
    ) -> None:
        self.data = bytearray(CONFIG_SIZE)
        struct.pack_into("<HH", self.data, 0, vendor, device)
        struct.pack_into("<I", self.data, 8, (class_code << 8) | revision)
        struct.pack_into("<HH", self.data, 0x2C, *subsystem)
        self.bars: dict[int, Bar] = {}
        self._cap_end = CAP_START
        self._last_cap = 0
        self.writable = bytearray(CONFIG_SIZE)  # per-byte write masks
        # called after every config write (a BAR moved, decoding turned on or off)
        self.on_change: Callable[[], None] | None = None
        # one 4-byte register backed by the device rather than by config bytes: (offset, read, write)
        self.window: tuple[int, Callable[[int], bytes], Callable[[bytes], None]] | None = None
        self._mask(COMMAND, 2, 0x0406)  # memory space, bus master, INTx disable
        self._mask(INTERRUPT_LINE, 1, 0xFF)

    def _mask(self, offset: int, size: int, mask: int) -> None:
        self.writable[offset : offset + size] = mask.to_bytes(size, "little")

    def add_bar(self, index: int, size: int, address: int) -> None:
        assert size >= 16 and size & (size - 1) == 0 and address % size == 0
        self.bars[index] = Bar(size, address)
        struct.pack_into("<I", self.data, BAR0 + 4 * index, address)  # 32-bit, non-prefetchable memory
        self._mask(BAR0 + 4 * index, 4, ~(size - 1) & 0xFFFFFFFF)

    def add_capability(self, cap_id: int, body: bytes, writable: bytes | None = None) -> int:
        """Append a capability (``body`` excludes the id and next bytes); returns its offset."""
        offset = self._cap_end
        length = 2 + len(body)
        assert offset + length <= CONFIG_SIZE
        self.data[offset] = cap_id
        self.data[offset + 2 : offset + length] = body
        if writable is not None:
            self.writable[offset + 2 : offset + length] = writable
        if self._last_cap:
            self.data[self._last_cap + 1] = offset
        else:
            self.data[CAPABILITIES] = offset
            struct.pack_into("<H", self.data, STATUS, STATUS_CAP_LIST)
        self._last_cap = offset
        self._cap_end = (offset + length + 3) & ~3
        return offset

    def set_interrupt_pin(self, pin: int, line: int) -> None:
        self.data[0x3D] = pin
        self.data[INTERRUPT_LINE] = line

    def read(self, offset: int, size: int) -> int:
        if offset < 0 or offset + size > CONFIG_SIZE:
            return (1 << (8 * size)) - 1
        if self.window is not None and self.window[0] <= offset < self.window[0] + 4:
            return int.from_bytes(self.window[1](size)[:size].ljust(size, b"\xff"), "little")
        return int.from_bytes(self.data[offset : offset + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        if offset < 0 or offset + size > CONFIG_SIZE:
            return
        if self.window is not None and self.window[0] <= offset < self.window[0] + 4:
            self.window[2](value.to_bytes(size, "little"))
            return
        for i in range(size):
            mask = self.writable[offset + i]
            byte = (value >> (8 * i)) & 0xFF
            self.data[offset + i] = (self.data[offset + i] & ~mask) | (byte & mask)
        for index, bar in self.bars.items():
            reg = BAR0 + 4 * index
            if offset < reg + 4 and reg < offset + size:
                bar.address = self.read(reg, 4) & ~0xF
        if self.on_change is not None:
            self.on_change()

    @property
    def command(self) -> int:
        return self.read(COMMAND, 2)

    def bar_at(self, address: int) -> tuple[int, int] | None:
        """(BAR index, offset) decoding ``address``, when memory decoding is on."""
        if not self.command & COMMAND_MEMORY:
            return None
        for index, bar in self.bars.items():
            if bar.address <= address < bar.address + bar.size:
                return index, address - bar.address
        return None
