"""Guest memory for tests: regions backed by bytearrays instead of host mappings."""

from __future__ import annotations

from virtkit.memory import GuestMemory, Region


def bytearray_memory(layout: list[tuple[int, int]]) -> GuestMemory:
    """``GuestMemory`` over ``(guest_address, size)`` regions, each a zeroed bytearray."""
    return GuestMemory([Region(g, s, bytearray(s)) for g, s in layout])
