"""The split virtqueue against a hostile driver: well-formed chains round-trip, malformed ones raise
VirtqueueError (never anything else), and every loop ends."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from virtio_driver import AVAIL, DESC, MEMORY, USED, Driver, memory

from virtkit.virtio.queue import (
    MAX_CHAIN_BYTES,
    VIRTQ_AVAIL_F_NO_INTERRUPT,
    VIRTQ_DESC_F_INDIRECT,
    VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
    SplitQueue,
    VirtqueueError,
)


def setup(size: int = 16) -> tuple[SplitQueue, Driver]:
    mem = memory()
    q = SplitQueue(256)
    d = Driver(mem, q, size)
    q.check(mem)
    return q, d


def test_chain_round_trip() -> None:
    q, d = setup()
    head, (waddr,) = d.chain([b"hello", b" world"], [32])
    d.offer(head)
    chain = q.pop(d.mem)
    assert chain is not None and chain.head == head
    assert chain.read(d.mem) == b"hello world"
    assert chain.writable_length == 32
    assert chain.write(d.mem, b"x" * 40) == 32
    q.push(d.mem, chain.head, 32)
    assert d.used() == [(head, 32)]
    assert d.mem.read(waddr, 32) == b"x" * 32
    assert q.pop(d.mem) is None


def test_indirect_chain() -> None:
    q, d = setup()
    table = d.buffer(16 * 3)
    a, b, c = d.buffer(4), d.buffer(4), d.buffer(8)
    d.mem.write(a, b"abcd")
    d.mem.write(b, b"efgh")
    d.desc(0, a, 4, VIRTQ_DESC_F_NEXT, 1, table=table)
    d.desc(1, b, 4, VIRTQ_DESC_F_NEXT, 2, table=table)
    d.desc(2, c, 8, VIRTQ_DESC_F_WRITE, 0, table=table)
    d.indirect(5, table, 3)
    d.offer(5)
    chain = q.pop(d.mem)
    assert chain is not None and chain.head == 5
    assert chain.read(d.mem) == b"abcdefgh" and chain.writable_length == 8


def test_interrupt_suppression_flags_and_event_idx() -> None:
    q, d = setup()
    d.mem.write_u16(AVAIL, VIRTQ_AVAIL_F_NO_INTERRUPT)
    head, _ = d.chain([], [8])
    d.offer(head)
    c = q.pop(d.mem)
    assert c is not None
    q.push(d.mem, c.head, 8)
    assert not q.needs_interrupt(d.mem)
    d.mem.write_u16(AVAIL, 0)
    assert q.needs_interrupt(d.mem)

    q, d = setup()
    q.event_idx = True
    used_event = AVAIL + 4 + 2 * d.size
    for i in range(3):
        head, _ = d.chain([], [8], start=i)
        d.offer(head)
    d.mem.write_u16(used_event, 1)  # "interrupt me once the used index passes 1"
    fired = []
    for _ in range(3):
        c = q.pop(d.mem)
        assert c is not None
        q.push(d.mem, c.head, 0)
        fired.append(q.needs_interrupt(d.mem))
    assert fired == [True, True, False]
    # avail_event tells the driver where to notify next
    assert d.mem.read_u16(USED + 4 + 8 * d.size) == 3


def expect_error(q: SplitQueue, d: Driver, match: str) -> None:
    with pytest.raises(VirtqueueError, match=match):
        q.pop(d.mem)


def test_descriptor_loop_is_cut_at_queue_size() -> None:
    q, d = setup()
    b = d.buffer(4)
    d.desc(0, b, 4, VIRTQ_DESC_F_NEXT, 1)
    d.desc(1, b, 4, VIRTQ_DESC_F_NEXT, 0)
    d.offer(0)
    expect_error(q, d, "loop")


def test_indirect_loop_is_cut_at_table_length() -> None:
    q, d = setup()
    table = d.buffer(32)
    b = d.buffer(4)
    d.desc(0, b, 4, VIRTQ_DESC_F_NEXT, 1, table=table)
    d.desc(1, b, 4, VIRTQ_DESC_F_NEXT, 0, table=table)
    d.indirect(0, table, 2)
    d.offer(0)
    expect_error(q, d, "loop")


@pytest.mark.parametrize(
    ("address", "length", "match"),
    [
        (MEMORY - 4, 8, "outside guest RAM"),
        (1 << 40, 1, "outside guest RAM"),
        (0xFFFFFFFFFFFFFFF0, 0x20, "outside guest RAM"),
        (0, MAX_CHAIN_BYTES + 1, "longer than"),
    ],
)
def test_buffers_outside_ram_or_oversize(address: int, length: int, match: str) -> None:
    q, d = setup()
    d.desc(0, address, length, VIRTQ_DESC_F_WRITE)
    d.offer(0)
    expect_error(q, d, match)


def test_bad_indices() -> None:
    q, d = setup()
    d.offer(16)  # head outside a queue of 16
    expect_error(q, d, "outside a queue")
    q, d = setup()
    d.desc(0, d.buffer(4), 4, VIRTQ_DESC_F_NEXT, 99)
    d.offer(0)
    expect_error(q, d, "points to 99")
    q, d = setup()
    d.mem.write_u16(AVAIL + 2, 200)  # the driver claims 200 new buffers in a queue of 16
    expect_error(q, d, "jumped")


def test_wrong_direction_and_bad_indirect() -> None:
    q, d = setup()
    d.desc(0, d.buffer(4), 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1)
    d.desc(1, d.buffer(4), 4, 0)
    d.offer(0)
    expect_error(q, d, "readable buffer follows")
    q, d = setup()
    table = d.buffer(16)
    d.desc(0, table, 16, VIRTQ_DESC_F_INDIRECT, table=table)  # an indirect table naming itself
    d.indirect(0, table, 1)
    d.offer(0)
    expect_error(q, d, "another indirect")
    q, d = setup()
    d.desc(0, d.buffer(16), 12, VIRTQ_DESC_F_INDIRECT)
    d.offer(0)
    expect_error(q, d, "multiple of 16")


def test_rings_outside_memory_are_refused_at_enable() -> None:
    mem = memory()
    q = SplitQueue(256)
    q.size, q.desc_table, q.avail_ring, q.used_ring = 256, MEMORY - 16, AVAIL, USED
    with pytest.raises(VirtqueueError, match="descriptor table"):
        q.check(mem)
    q.desc_table, q.size = DESC, 100
    with pytest.raises(VirtqueueError, match="power of two"):
        q.check(mem)


descriptors = st.tuples(
    st.one_of(st.integers(0, MEMORY), st.integers(0, 2**64 - 1)),
    st.one_of(st.integers(0, 256), st.integers(0, 2**32 - 1)),
    st.integers(0, 7),
    st.integers(0, 20),
)


@settings(max_examples=300, deadline=None)
@given(
    table=st.lists(descriptors, min_size=16, max_size=16),
    heads=st.lists(st.integers(0, 20), min_size=1, max_size=8),
    avail_idx=st.integers(0, 0xFFFF),
)
def test_arbitrary_descriptor_tables_never_escape(
    table: list[tuple[int, int, int, int]], heads: list[int], avail_idx: int
) -> None:
    """Whatever the driver writes, pop returns a chain within guest RAM and the queue size, or raises
    VirtqueueError; nothing else."""
    q, d = setup()
    for i, (address, length, flags, nxt) in enumerate(table):
        d.mem.write(DESC + 16 * i, struct.pack("<QIHH", address, length, flags, nxt))
    for h in heads:
        d.offer(h)
    if avail_idx % 3 == 0:
        d.mem.write_u16(AVAIL + 2, avail_idx)
    for _ in range(len(heads) + 1):
        try:
            chain = q.pop(d.mem)
        except VirtqueueError:
            return
        if chain is None:
            return
        buffers = chain.readable + chain.writable
        assert 1 <= len(buffers) <= 16
        assert all(d.mem.contains(b.address, b.length) for b in buffers)
        assert chain.readable_length + chain.writable_length <= MAX_CHAIN_BYTES
