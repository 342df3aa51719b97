"""The PCI root: bus 0 with a host bridge at 00.0, configuration mechanism #1 (ports 0xCF8-0xCFF) and one
MMIO window that decodes every function's BARs at whatever address the guest gave them."""

from __future__ import annotations

from typing import Protocol

from virtkit.devices.pci.config import PciConfig

CONFIG_ADDRESS_PORT = 0xCF8
CONFIG_PORT_LENGTH = 8
# BARs are placed in [WINDOW_BASE, WINDOW_BASE + WINDOW_SIZE), inside the 32-bit MMIO gap
WINDOW_BASE = 0xE0000000
WINDOW_SIZE = 0x10000000
MAX_SLOTS = 32
HOST_BRIDGE_CLASS = 0x060000


class PciFunction(Protocol):
    config: PciConfig

    def bar_read(self, bar: int, offset: int, size: int) -> bytes: ...

    def bar_write(self, bar: int, offset: int, data: bytes) -> None: ...


class HostBridge:
    def __init__(self) -> None:
        # Intel 440FX's ids: Linux's conf1 sanity check wants a host bridge or an Intel/Compaq device on bus 0
        self.config = PciConfig(0x8086, 0x1237, HOST_BRIDGE_CLASS)

    def bar_read(self, bar: int, offset: int, size: int) -> bytes:
        return b"\xff" * size

    def bar_write(self, bar: int, offset: int, data: bytes) -> None:
        pass


class PciRoot:
    def __init__(self) -> None:
        self.slots: dict[int, PciFunction] = {0: HostBridge()}
        self.address = 0
        self._next_bar = WINDOW_BASE

    def add(self, function: PciFunction) -> int:
        """Put ``function`` in the next free slot; returns the slot."""
        slot = next(s for s in range(MAX_SLOTS) if s not in self.slots)
        self.slots[slot] = function
        return slot

    def allocate_bar(self, size: int) -> int:
        address = (self._next_bar + size - 1) & ~(size - 1)
        if address + size > WINDOW_BASE + WINDOW_SIZE:
            raise ValueError("the PCI MMIO window is full")
        self._next_bar = address + size
        return address

    # --- configuration mechanism #1: a PIO device at 0xCF8 ---------------------------------------------

    def _selected(self) -> tuple[PciFunction | None, int]:
        if not self.address & 0x80000000:
            return None, 0
        bus, slot, func = (self.address >> 16) & 0xFF, (self.address >> 11) & 0x1F, (self.address >> 8) & 7
        if bus or func:
            return None, 0
        return self.slots.get(slot), self.address & 0xFC

    def read(self, offset: int, size: int) -> bytes:
        if offset < 4:
            if offset == 0 and size == 4:
                return self.address.to_bytes(4, "little")
            return b"\xff" * size
        function, register = self._selected()
        if function is None:
            return b"\xff" * size
        value = function.config.read(register + (offset - 4), size)
        return value.to_bytes(size, "little")

    def write(self, offset: int, data: bytes) -> None:
        if offset < 4:
            if offset == 0 and len(data) == 4:
                self.address = int.from_bytes(data, "little") & 0xFFFFFFFC | 0  # type 0 only
            return
        function, register = self._selected()
        if function is not None:
            function.config.write(register + (offset - 4), len(data), int.from_bytes(data, "little"))


class PciWindow:
    """The MMIO device covering the BAR window: routes an access to the function whose BAR decodes it."""

    def __init__(self, root: PciRoot) -> None:
        self.root = root

    def _find(self, offset: int) -> tuple[PciFunction, int, int] | None:
        address = WINDOW_BASE + offset
        for function in self.root.slots.values():
            hit = function.config.bar_at(address)
            if hit is not None:
                return function, hit[0], hit[1]
        return None

    def read(self, offset: int, size: int) -> bytes:
        found = self._find(offset)
        if found is None:
            return b"\xff" * size
        function, bar, bar_offset = found
        return function.bar_read(bar, bar_offset, size)

    def write(self, offset: int, data: bytes) -> None:
        found = self._find(offset)
        if found is not None:
            function, bar, bar_offset = found
            function.bar_write(bar, bar_offset, data)
