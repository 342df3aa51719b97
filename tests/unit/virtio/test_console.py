"""virtio-console MULTIPORT, driven through the handshake Linux's virtio_console performs: DEVICE_READY,
DEVICE_ADD per port, PORT_READY, CONSOLE_PORT / PORT_NAME, PORT_OPEN; then data both ways."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from virtio_driver import STRIDE, Driver, memory

from virtkit.virtio import console as vc
from virtkit.virtio import device as vd

AGENT = "org.qemu.guest_agent.0"


class Guest:
    def __init__(self) -> None:
        self.mem = memory()
        self.out: dict[int, bytearray] = {0: bytearray(), 1: bytearray()}
        self.dev = vc.Console([vc.Port(None, self.out[0].extend), vc.Port(AGENT, self.out[1].extend)])
        self.dev.memory = self.mem
        self.irqs: list[int] = []
        self.dev.interrupt = self  # type: ignore[assignment]
        self.q = [Driver(self.mem, q, 16, base=i * STRIDE) for i, q in enumerate(self.dev.queues)]
        self.seen_control = 0
        self.dev.driver_features = vd.VIRTIO_F_VERSION_1 | vc.VIRTIO_CONSOLE_F_MULTIPORT
        self.dev.set_status(vd.ACKNOWLEDGE | vd.DRIVER | vd.FEATURES_OK | vd.DRIVER_OK)

    def queue(self, index: int) -> None:
        self.irqs.append(index)

    def config(self) -> None:
        self.irqs.append(-1)

    def post_rx(self, index: int, n: int = 4, length: int = 64) -> None:
        d = self.q[index]
        for _ in range(n):
            start = d.avail_idx % d.size
            d.offer(d.chain([], [length], start=start)[0])
        self.dev.notify(index)

    def send(self, index: int, data: bytes) -> None:
        d = self.q[index]
        d.offer(d.chain([data], [], start=d.avail_idx % d.size)[0])
        self.dev.notify(index)

    def control(self, port: int, event: int, value: int) -> None:
        self.send(vc.CONTROL_TX, struct.pack("<IHH", port, event, value))

    def received(self, index: int) -> list[bytes]:
        d = self.q[index]
        out = []
        for head, length in d.used():
            address = d.mem.read_u64(d.base + 0x1000 + 16 * head)
            out.append(d.mem.read(address, length))
        return out

    def control_messages(self) -> list[tuple[int, int, int, bytes]]:
        return [(*struct.unpack("<IHH", m[:8]), m[8:]) for m in self.received(vc.CONTROL_RX)]


def handshake(g: Guest) -> None:
    g.post_rx(vc.CONTROL_RX, 12)
    g.control(0, vc.DEVICE_READY, 1)
    for port in (0, 1):
        g.control(port, vc.PORT_READY, 1)
    g.control(0, vc.PORT_OPEN, 1)
    g.control(1, vc.PORT_OPEN, 1)


def test_config_space_announces_two_ports() -> None:
    g = Guest()
    assert struct.unpack("<HHII", g.dev.read_config(0, 12))[2] == 2
    assert g.dev.features & vc.VIRTIO_CONSOLE_F_MULTIPORT


def test_linux_handshake_names_the_agent_port() -> None:
    g = Guest()
    handshake(g)
    assert g.control_messages() == [
        (0, vc.DEVICE_ADD, 0, b""),
        (1, vc.DEVICE_ADD, 0, b""),
        (0, vc.CONSOLE_PORT, 1, b""),
        (0, vc.PORT_OPEN, 1, b""),
        (1, vc.PORT_NAME, 1, AGENT.encode()),
        (1, vc.PORT_OPEN, 1, b""),
    ]
    assert g.dev.ports[1].guest_open


def test_data_both_ways_on_the_agent_port() -> None:
    g = Guest()
    rx, tx = vc.rx_queue(1), vc.tx_queue(1)
    assert (rx, tx) == (4, 5)
    g.dev.input(1, b'{"execute":"guest-ping"}\n')  # before the port is open: held
    handshake(g)
    g.post_rx(rx, 2, length=16)
    assert b"".join(g.received(rx)) == b'{"execute":"guest-ping"}\n'[:32]
    g.post_rx(rx, 2, length=16)
    assert b"".join(g.received(rx)) == b'{"execute":"guest-ping"}\n'
    g.send(tx, b'{"return": {}}\n')
    assert g.out[1] == b'{"return": {}}\n'
    g.send(vc.tx_queue(0), b"login: ")
    assert g.out[0] == b"login: "
    assert rx in g.irqs and tx in g.irqs


def test_pending_input_is_bounded() -> None:
    g = Guest()
    assert g.dev.input(1, bytes(vc.MAX_PENDING + 10)) == vc.MAX_PENDING
    assert g.dev.ports[1].dropped == 10


def test_bad_control_messages_and_directions() -> None:
    g = Guest()
    g.post_rx(vc.CONTROL_RX, 4)
    g.control(7, vc.PORT_READY, 1)  # no such port: ignored
    assert not g.dev.status & vd.DEVICE_NEEDS_RESET
    g.send(vc.CONTROL_TX, b"\x01\x02")  # a short message
    assert g.dev.status & vd.DEVICE_NEEDS_RESET
    g.dev.reset()
    assert g.dev.status == 0 and g.dev.broken is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)), max_size=12))
def test_arbitrary_control_messages_never_escape(messages: list[tuple[int, int, int]]) -> None:
    g = Guest()
    g.post_rx(vc.CONTROL_RX, 12)
    for port, event, value in messages:
        g.control(port, event, value)
    assert len(g.dev._control_out) <= vc.MAX_CONTROL_PENDING


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 5),  # queue
            st.integers(0, 2**64 - 1),  # address
            st.integers(0, 2**32 - 1),  # length
            st.integers(0, 7),  # flags
            st.integers(0, 20),  # next
        ),
        max_size=10,
    ),
    st.binary(max_size=64),
)
def test_arbitrary_descriptors_on_every_queue_never_escape(
    descs: list[tuple[int, int, int, int, int]], host_input: bytes
) -> None:
    g = Guest()
    handshake(g)
    for q, address, length, flags, nxt in descs:
        d = g.q[q]
        d.desc(d.avail_idx % d.size, address, length, flags, nxt)
        d.offer(d.avail_idx % d.size)
        g.dev.notify(q)
        g.dev.input(1, host_input)
    assert g.dev.broken is None or g.dev.status & vd.DEVICE_NEEDS_RESET
    assert len(g.dev.ports[1].pending) <= vc.MAX_PENDING
