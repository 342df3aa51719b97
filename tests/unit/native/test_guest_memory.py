from __future__ import annotations

import pytest
from tests.support.memory import bytearray_memory

from virtkit.memory import GuestMemory, GuestMemoryError


def test_reads_and_writes_by_guest_address_across_regions() -> None:
    mem = bytearray_memory([(0, 0x1000), (0x10000, 0x1000)])
    mem.write_u32(0xFFC, 0xDEADBEEF)
    mem.write_u64(0x10008, 0x0123456789ABCDEF)
    assert mem.read_u32(0xFFC) == 0xDEADBEEF
    assert mem.read(0x10008, 8) == bytes.fromhex("efcdab8967452301")
    assert mem.size == 0x2000


@pytest.mark.parametrize(("address", "length"), [(0xFFE, 4), (0x1000, 1), (0x10FFF, 2), (-1, 1), (0x20000, 0)])
def test_ranges_not_inside_one_region_are_refused(address: int, length: int) -> None:
    mem = bytearray_memory([(0, 0x1000), (0x10000, 0x1000)])
    with pytest.raises(GuestMemoryError):
        mem.read(address, length)
    assert not mem.contains(address, length)


def test_views_write_through() -> None:
    mem = bytearray_memory([(0, 0x100)])
    view = mem.view(0x10, 4)
    view[:] = b"abcd"
    assert mem.read(0x10, 4) == b"abcd"


def test_overlapping_regions_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        bytearray_memory([(0, 0x2000), (0x1000, 0x1000)])


def test_anonymous_memory_has_host_addresses_and_closes() -> None:
    mem = GuestMemory.anonymous([(0, 1 << 20), (1 << 22, 3 << 20)])
    assert all(r.host_address % (2 << 20) == 0 for r in mem.regions)  # huge-page aligned
    mem.write((1 << 22) + (3 << 20) - 4, b"tail")
    assert mem.read((1 << 22) + (3 << 20) - 4, 4) == b"tail"
    mem.write(0xFF000, b"x")
    assert mem.read(0xFF000, 1) == b"x"
    mem.close()
