"""virtio-rng behind the virtio-pci transport, driven like Linux's virtio_pci_modern does, in test memory:
capabilities, feature negotiation, queue setup, notify, MSI-X and INTx delivery, reset; and a hostile driver
that only ever gets the device flagged DEVICE_NEEDS_RESET."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from virtio_driver import AVAIL, DESC, MEMORY, USED, Driver, memory

from virtkit.devices.pci.config import PciConfig
from virtkit.devices.pci.root import WINDOW_BASE, PciRoot, PciWindow
from virtkit.devices.trigger import RecordingTrigger
from virtkit.virtio import device as vd
from virtkit.virtio import pci
from virtkit.virtio.queue import MAX_CHAIN_BYTES, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE
from virtkit.virtio.rng import Rng

BAR = WINDOW_BASE


class Machine:
    def __init__(self) -> None:
        self.mem = memory()
        self.rng = Rng()
        self.rng.memory = self.mem
        self.msis: list[tuple[int, int]] = []
        self.intx = RecordingTrigger()
        self.root = PciRoot()
        self.fn = pci.VirtioPci(self.rng, self.root.allocate_bar(pci.BAR_SIZE), lambda a, d: self.msis.append((a, d)),
                                self.intx, 11)  # fmt: skip
        self.slot = self.root.add(self.fn)
        self.window = PciWindow(self.root)

    def cfg_read(self, slot: int, reg: int, size: int = 4) -> int:
        self.root.write(0, struct.pack("<I", 0x80000000 | slot << 11 | (reg & 0xFC)))
        return int.from_bytes(self.root.read(4 + (reg & 3), size), "little")

    def cfg_write(self, slot: int, reg: int, value: int, size: int = 4) -> None:
        self.root.write(0, struct.pack("<I", 0x80000000 | slot << 11 | (reg & 0xFC)))
        self.root.write(4 + (reg & 3), value.to_bytes(size, "little"))

    def r(self, offset: int, size: int) -> int:
        return int.from_bytes(self.window.read(offset, size), "little")

    def w(self, offset: int, value: int, size: int) -> None:
        self.window.write(offset, value.to_bytes(size, "little"))

    def caps(self) -> dict[int, tuple[int, int]]:
        """virtio cfg_type -> (bar, offset), walking the capability list as a driver does."""
        found = {}
        ptr = self.cfg_read(self.slot, 0x34, 1)
        while ptr:
            if self.cfg_read(self.slot, ptr, 1) == pci.CAP_VENDOR:
                found[self.cfg_read(self.slot, ptr + 3, 1)] = (self.cfg_read(self.slot, ptr + 4, 1),
                                                               self.cfg_read(self.slot, ptr + 8))  # fmt: skip
            ptr = self.cfg_read(self.slot, ptr + 1, 1)
        return found

    def bring_up(self, msix: bool = True, features: int = vd.VIRTIO_F_VERSION_1) -> Driver:
        self.cfg_write(self.slot, 4, 0x6, 2)  # memory + bus master
        if msix:
            cap = self.fn.msix_cap
            self.cfg_write(self.slot, cap + 2, 0x8000, 2)
            self.fn.msix.table[0:16] = struct.pack("<QII", 0xFEE00000, 0x41, 0)
        common = self.caps()[pci.COMMON_CFG][1]
        self.w(common + 0x14, 0, 1)
        self.w(common + 0x14, vd.ACKNOWLEDGE | vd.DRIVER, 1)
        self.w(common + 0x08, 1, 4)
        self.w(common + 0x0C, features >> 32, 4)
        self.w(common + 0x14, vd.ACKNOWLEDGE | vd.DRIVER | vd.FEATURES_OK, 1)
        assert self.r(common + 0x14, 1) & vd.FEATURES_OK
        self.w(common + 0x16, 0, 2)
        assert self.r(common + 0x18, 2) == 256
        self.w(common + 0x18, 16, 2)
        self.w(common + 0x1A, 0, 2)
        for off, addr in ((0x20, DESC), (0x28, AVAIL), (0x30, USED)):
            self.w(common + off, addr, 4)
            self.w(common + off + 4, 0, 4)
        d = Driver(self.mem, self.rng.queues[0], 16)
        self.rng.queues[0].ready = False  # the Driver helper sets it; here the transport must
        self.w(common + 0x1C, 1, 2)
        self.w(common + 0x14, vd.ACKNOWLEDGE | vd.DRIVER | vd.FEATURES_OK | vd.DRIVER_OK, 1)
        return d

    def notify(self, queue: int = 0) -> None:
        self.w(self.caps()[pci.NOTIFY_CFG][1] + queue * pci.NOTIFY_MULTIPLIER, queue, 2)

    @property
    def status(self) -> int:
        return self.r(self.caps()[pci.COMMON_CFG][1] + 0x14, 1)


def test_enumeration_sees_host_bridge_and_virtio_rng() -> None:
    m = Machine()
    assert m.cfg_read(0, 0) == 0x12378086
    assert m.cfg_read(m.slot, 0) == 0x10441AF4
    assert m.cfg_read(m.slot, 0x08) >> 8 == 0xFF0000 and m.cfg_read(m.slot, 0x08) & 0xFF == 1
    assert m.cfg_read(31, 0) == 0xFFFFFFFF
    # BAR sizing: all ones reads back the size mask, then the guest may move it
    m.cfg_write(m.slot, 0x10, 0xFFFFFFFF)
    assert m.cfg_read(m.slot, 0x10) == (~(pci.BAR_SIZE - 1)) & 0xFFFFFFFF
    m.cfg_write(m.slot, 0x10, BAR)
    assert set(m.caps()) == {pci.COMMON_CFG, pci.NOTIFY_CFG, pci.ISR_CFG, pci.DEVICE_CFG, pci.PCI_CFG}
    assert m.r(0, 4) == 0xFFFFFFFF  # memory decoding is off until the driver turns it on
    m.cfg_write(m.slot, 4, 2, 2)
    assert m.r(m.caps()[pci.COMMON_CFG][1] + 0x12, 2) == 1  # num_queues


def test_rng_round_trip_with_msix() -> None:
    m = Machine()
    d = m.bring_up()
    head, (addr,) = d.chain([], [64])
    d.offer(head)
    m.notify()
    assert d.used() == [(head, 64)]
    assert d.mem.read(addr, 64) != bytes(64)
    assert m.msis == [(0xFEE00000, 0x41)]
    assert m.rng.requests == 1 and m.rng.bytes_served == 64


def test_masked_vector_is_pending_until_unmasked() -> None:
    m = Machine()
    d = m.bring_up()
    m.fn.msix.table[12] = 1
    d.offer(d.chain([], [8])[0])
    m.notify()
    assert m.msis == [] and m.r(pci.MSIX_PBA_OFFSET, 8) == 1
    m.w(pci.MSIX_TABLE_OFFSET + 12, 0, 4)
    assert m.msis == [(0xFEE00000, 0x41)] and m.r(pci.MSIX_PBA_OFFSET, 8) == 0


def test_function_mask_holds_messages_until_cleared() -> None:
    m = Machine()
    d = m.bring_up()
    cap = m.fn.msix_cap
    m.cfg_write(m.slot, cap + 2, 0xC000, 2)  # enabled, function masked
    d.offer(d.chain([], [8])[0])
    m.notify()
    assert m.msis == [] and m.fn.msix.pending[0]
    m.cfg_write(m.slot, cap + 2, 0x8000, 2)
    assert m.msis == [(0xFEE00000, 0x41)] and not m.fn.msix.pending[0]


def test_rng_with_intx_and_isr_acknowledge() -> None:
    m = Machine()
    d = m.bring_up(msix=False)
    d.offer(d.chain([], [8])[0])
    m.notify()
    assert m.intx.level
    assert m.r(pci.ISR_OFFSET, 1) == pci.ISR_QUEUE
    assert not m.intx.level and m.r(pci.ISR_OFFSET, 1) == 0


def test_features_we_never_offered_are_refused() -> None:
    m = Machine()
    common = m.caps()[pci.COMMON_CFG][1]
    m.cfg_write(m.slot, 4, 2, 2)
    m.w(common + 0x14, vd.ACKNOWLEDGE | vd.DRIVER, 1)
    m.w(common + 0x08, 1, 4)
    m.w(common + 0x0C, 1 | 1 << 20, 4)  # VERSION_1 and a bit nobody offered
    m.w(common + 0x14, vd.ACKNOWLEDGE | vd.DRIVER | vd.FEATURES_OK, 1)
    assert not m.r(common + 0x14, 1) & vd.FEATURES_OK


def test_wrong_direction_flags_needs_reset_and_reset_recovers() -> None:
    m = Machine()
    d = m.bring_up()
    d.desc(0, d.buffer(8), 8, 0)  # rng buffers must be device-writable
    d.offer(0)
    m.notify()
    assert m.status & vd.DEVICE_NEEDS_RESET
    assert m.msis == []  # config_msix_vector is NO_VECTOR: nothing to send, nothing crashed
    assert d.used() == []
    m.w(m.caps()[pci.COMMON_CFG][1] + 0x14, 0, 1)
    assert m.status == 0
    d.mem.write(DESC, bytes(USED + 0x1000 - DESC))  # a driver starts again on fresh rings
    d = m.bring_up()
    d.offer(d.chain([], [8])[0])
    m.notify()
    assert len(d.used()) == 1 and not m.status & vd.DEVICE_NEEDS_RESET


@settings(max_examples=200, deadline=None)
@given(
    table=st.lists(
        st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1), st.integers(0, 7), st.integers(0, 20)),
        min_size=16,
        max_size=16,
    ),
    heads=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=4),
    writes=st.lists(
        st.tuples(st.integers(0, pci.BAR_SIZE), st.sampled_from([1, 2, 4, 8]), st.integers(0, 2**64 - 1)), max_size=20
    ),
)
def test_hostile_driver_never_escapes_the_device(
    table: list[tuple[int, int, int, int]], heads: list[int], writes: list[tuple[int, int, int]]
) -> None:
    """Arbitrary descriptors and arbitrary BAR writes: the device serves, ignores, or flags NEEDS_RESET;
    it never raises into the VMM."""
    m = Machine()
    d = m.bring_up()
    for i, (address, length, flags, nxt) in enumerate(table):
        d.desc(i, address, length, flags, nxt)
    for h in heads:
        d.offer(h)
    m.notify()
    for offset, size, value in writes:
        m.window.write(offset, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))
        m.notify()
    for offset, size, _ in writes:
        assert len(m.window.read(offset, size)) == size
    assert isinstance(m.status, int)
    assert m.rng.broken is None or m.status & vd.DEVICE_NEEDS_RESET or m.status == 0


def test_pci_config_is_bounded() -> None:
    c = PciConfig(1, 2, 3)
    assert c.read(300, 4) == 0xFFFFFFFF
    c.write(255, 4, 0)  # past the end: ignored
    c.write(0, 4, 0xFFFFFFFF)  # ids are read-only
    assert c.read(0, 4) == 0x00020001
    _ = VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE


MALFORMED = st.one_of(
    st.tuples(st.just("loop"), st.integers(1, 16)),  # a cycle of this many descriptors
    st.tuples(st.just("outside"), st.integers(MEMORY, 2**64 - 17)),
    st.tuples(st.just("oversize"), st.integers(MAX_CHAIN_BYTES + 1, 2**32 - 1)),
    st.tuples(st.just("bad-head"), st.integers(16, 0xFFFF)),
    st.tuples(st.just("bad-next"), st.integers(16, 0xFFFF)),
    st.tuples(st.just("wrong-direction"), st.integers(1, 4)),
    st.tuples(st.just("avail-jump"), st.integers(17, 0xFFFF)),
)


@settings(max_examples=300, deadline=None)
@given(case=MALFORMED, good_first=st.booleans())
def test_every_malformed_case_flags_needs_reset_and_the_device_recovers(
    case: tuple[str, int], good_first: bool
) -> None:
    m = Machine()
    d = m.bring_up()
    if good_first:  # a well-formed request before the bad one changes nothing
        d.offer(d.chain([], [8], start=15)[0])
        m.notify()
        assert len(d.used()) == 1
    kind, n = case
    buf = d.buffer(16)
    if kind == "loop":
        for i in range(n):
            d.desc(i, buf, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, (i + 1) % n)
        d.offer(0)
    elif kind == "outside":
        d.desc(0, n, 16, VIRTQ_DESC_F_WRITE)
        d.offer(0)
    elif kind == "oversize":
        d.desc(0, buf, n, VIRTQ_DESC_F_WRITE)
        d.offer(0)
    elif kind == "bad-head":
        d.offer(n)
    elif kind == "bad-next":
        d.desc(0, buf, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, n)
        d.offer(0)
    elif kind == "wrong-direction":
        for i in range(n):
            d.desc(i, buf, 8, VIRTQ_DESC_F_NEXT if i + 1 < n else 0, i + 1)
        d.offer(0)
    else:
        d.desc(0, buf, 8, VIRTQ_DESC_F_WRITE)
        d.offer(0)
        d.mem.write_u16(AVAIL + 2, (d.avail_idx + n - 1) & 0xFFFF)
    used_before = len(d.used())
    m.notify()
    assert m.status & vd.DEVICE_NEEDS_RESET, case
    assert len(d.used()) == used_before  # nothing half-done was returned
    m.notify()  # further notifications are ignored, not re-raised
    assert m.rng.broken is not None
    m.w(m.caps()[pci.COMMON_CFG][1] + 0x14, 0, 1)  # the driver resets: the device works again
    d.mem.write(DESC, bytes(USED + 0x1000 - DESC))
    d = m.bring_up()
    d.offer(d.chain([], [8])[0])
    m.notify()
    assert len(d.used()) == 1 and not m.status & vd.DEVICE_NEEDS_RESET


def test_pci_cfg_capability_is_a_window_into_the_bar() -> None:
    m = Machine()
    cap = m.fn.cfg_cap
    common = m.caps()[pci.COMMON_CFG][1]
    m.cfg_write(m.slot, cap + 4, 0, 1)  # bar 0
    m.cfg_write(m.slot, cap + 8, common + 0x12)  # num_queues
    m.cfg_write(m.slot, cap + 12, 2)
    assert m.cfg_read(m.slot, cap + 16, 2) == 1
    m.cfg_write(m.slot, cap + 8, common + 0x14)  # device_status, written through the window
    m.cfg_write(m.slot, cap + 12, 1)
    m.cfg_write(m.slot, cap + 16, vd.ACKNOWLEDGE, 1)
    assert m.rng.status == vd.ACKNOWLEDGE
    m.cfg_write(m.slot, cap + 8, pci.BAR_SIZE)  # past the BAR: reads all ones, writes nothing
    assert m.cfg_read(m.slot, cap + 16, 1) == 0xFF
    m.cfg_write(m.slot, cap + 3, 0x77, 1)  # cfg_type is read-only
    assert m.cfg_read(m.slot, cap + 3, 1) == pci.PCI_CFG
