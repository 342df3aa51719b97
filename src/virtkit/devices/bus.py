"""An address-range bus (PIO or MMIO) that refuses overlapping devices (after Firecracker's vstate/bus.rs)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Protocol

from virtkit.errors import VirtkitError


class BusError(VirtkitError):
    """A device cannot be placed on a bus."""


class BusDevice(Protocol):
    """A device sees offsets relative to the base of its range, never absolute addresses."""

    def read(self, offset: int, size: int) -> bytes: ...

    def write(self, offset: int, data: bytes) -> None: ...


@dataclass(frozen=True)
class Range:
    base: int
    length: int

    @property
    def end(self) -> int:
        return self.base + self.length

    def overlaps(self, other: Range) -> bool:
        return self.base < other.end and other.base < self.end


class Bus:
    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit  # one past the highest address (0x10000 for ports)
        self._bases: list[int] = []
        self._entries: list[tuple[Range, BusDevice]] = []

    def insert(self, device: BusDevice, base: int, length: int) -> None:
        new = Range(base, length)
        if length <= 0 or base < 0 or new.end > self.limit:
            raise BusError(f"{self.name}: range {base:#x}+{length:#x} is outside {0:#x}-{self.limit:#x}")
        for existing, dev in self._entries:
            if existing.overlaps(new):
                raise BusError(
                    f"{self.name}: {type(device).__name__} at {base:#x}+{length:#x} overlaps "
                    f"{type(dev).__name__} at {existing.base:#x}+{existing.length:#x}"
                )
        i = bisect.bisect(self._bases, base)
        self._bases.insert(i, base)
        self._entries.insert(i, (new, device))

    def resolve(self, address: int) -> tuple[BusDevice, int] | None:
        """The device holding ``address`` and the offset into its range, or None."""
        i = bisect.bisect(self._bases, address) - 1
        if i < 0:
            return None
        rng, device = self._entries[i]
        if address >= rng.end:
            return None
        return device, address - rng.base

    def read(self, address: int, size: int) -> bytes | None:
        found = self.resolve(address)
        if found is None:
            return None
        device, offset = found
        return device.read(offset, size)

    def write(self, address: int, data: bytes) -> bool:
        found = self.resolve(address)
        if found is None:
            return False
        device, offset = found
        device.write(offset, data)
        return True

    def __len__(self) -> int:
        return len(self._entries)
