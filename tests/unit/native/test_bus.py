from __future__ import annotations

import pytest

from virtkit.devices.bus import Bus, BusError


class Recorder:
    def __init__(self) -> None:
        self.writes: list[tuple[int, bytes]] = []

    def read(self, offset: int, size: int) -> bytes:
        return bytes([offset]) * size

    def write(self, offset: int, data: bytes) -> None:
        self.writes.append((offset, data))


def test_devices_see_offsets_within_their_range() -> None:
    bus = Bus("pio", 0x10000)
    a, b = Recorder(), Recorder()
    bus.insert(a, 0x3F8, 8)
    bus.insert(b, 0x60, 5)
    assert bus.read(0x3FD, 1) == b"\x05"
    assert bus.write(0x64, b"\xfe")
    assert b.writes == [(4, b"\xfe")]
    assert a.writes == []


@pytest.mark.parametrize("address", [0x3F7, 0x400, 0x0, 0xFFFF])
def test_addresses_outside_every_range_are_unclaimed(address: int) -> None:
    bus = Bus("pio", 0x10000)
    bus.insert(Recorder(), 0x3F8, 8)
    assert bus.read(address, 1) is None
    assert bus.write(address, b"\x00") is False


@pytest.mark.parametrize(
    ("base", "length"),
    [(0x3F8, 8), (0x3F0, 9), (0x3FF, 1), (0x3F0, 0x20), (0x3FA, 2)],
)
def test_overlapping_ranges_are_refused(base: int, length: int) -> None:
    bus = Bus("pio", 0x10000)
    bus.insert(Recorder(), 0x3F8, 8)
    with pytest.raises(BusError, match="overlaps"):
        bus.insert(Recorder(), base, length)
    assert len(bus) == 1


def test_adjacent_ranges_are_fine() -> None:
    bus = Bus("pio", 0x10000)
    bus.insert(Recorder(), 0x3F8, 8)
    bus.insert(Recorder(), 0x3F0, 8)
    bus.insert(Recorder(), 0x400, 1)
    assert len(bus) == 3


@pytest.mark.parametrize(("base", "length"), [(0xFFFF, 2), (-1, 2), (0x10, 0)])
def test_ranges_outside_the_bus_or_empty_are_refused(base: int, length: int) -> None:
    with pytest.raises(BusError):
        Bus("pio", 0x10000).insert(Recorder(), base, length)
