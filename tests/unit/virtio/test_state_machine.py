"""The virtio status state machine, queue validation, work budgets and contained guest errors (issue 17):
one regression test per reproduction in the issue, at the device level over test memory, then the rules one
by one, then a short run of the state-machine fuzzer (bench/fuzz.py runs it for a million inputs)."""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.support.virtio_fuzz import Fuzzer, PciRig, console_rig, race_input_with_resets, rng_rig

from virtkit.machine.agent_socket import SocketBridge
from virtkit.virtio import console as vc
from virtkit.virtio import device as vd
from virtkit.virtio.common_config import Reg
from virtkit.virtio.queue import VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, SplitQueue, VirtqueueError

OK = vd.ACKNOWLEDGE | vd.DRIVER | vd.FEATURES_OK | vd.DRIVER_OK  # 0x0F
TOGGLED = OK & ~vd.DRIVER_OK  # 0x0B: DRIVER_OK cleared without a reset
CONSOLE_FEATURES = vd.VIRTIO_F_VERSION_1 | vc.VIRTIO_CONSOLE_F_MULTIPORT


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    logger = logging.getLogger("virtkit.virtio")
    level = logger.level
    logger.setLevel(logging.ERROR)  # every case here flags NEEDS_RESET on purpose
    yield
    logger.setLevel(level)


def ring(index: int) -> tuple[int, int, int]:
    base = 0x1000 + 0x4000 * index
    return base, base + 0x100, base + 0x1000


def bring_up(rig: PciRig, size: int = 16, features: int | None = None) -> None:
    rig.negotiate(features)
    for index in range(len(rig.device.queues)):
        rig.setup_queue(index, size, *ring(index))
    rig.driver_ok()
    assert rig.status == OK and rig.device.serving


def rng_request(rig: PciRig, length: int = 8) -> int:
    """Offer one device-writable buffer on the rng queue, notify; returns the used index after."""
    desc, avail, used = ring(0)
    slot = rig.mem.read_u16(avail + 2) % 16
    rig.desc(desc, slot, 0x80000, length, VIRTQ_DESC_F_WRITE)
    rig.offer(avail, 16, [slot])
    rig.notify(0)
    return rig.used_idx(used)


def control(rig: PciRig, port: int, event: int, value: int) -> None:
    desc, avail, _ = ring(vc.CONTROL_TX)
    slot = rig.mem.read_u16(avail + 2) % 16
    buf = 0x90000 + 16 * slot
    rig.mem.write(buf, struct.pack("<IHH", port, event, value))
    rig.desc(desc, slot, buf, 8)
    rig.offer(avail, 16, [slot])
    rig.notify(vc.CONTROL_TX)


def rx_buffers(rig: PciRig, index: int, count: int = 1, length: int = 64) -> None:
    desc, avail, _ = ring(index)
    for _ in range(count):
        slot = rig.mem.read_u16(avail + 2) % 16
        rig.desc(desc, slot, 0xA0000 + 0x100 * slot, length, VIRTQ_DESC_F_WRITE)
        rig.offer(avail, 16, [slot])
    rig.notify(index)


def lock_is_free(device: vd.VirtioDevice) -> bool:
    """Whether another thread can take the device lock at once (the vCPUs, pause and the control socket)."""
    got: list[bool] = []

    def take() -> None:
        got.append(device.lock.acquire(timeout=0.2))
        if got[0]:
            device.lock.release()

    t = threading.Thread(target=take)
    t.start()
    t.join()
    return got[0]


# --- the five reproductions --------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: rng_rig(), lambda: console_rig()[0]], ids=["rng", "console"])
def test_1_clearing_driver_ok_needs_reset_and_no_unvalidated_queue_is_served(make: Callable[[], PciRig]) -> None:
    rig = make()
    bring_up(rig, features=vd.VIRTIO_F_VERSION_1 | rig.device.device_features)
    rig.write(Reg.DEVICE_STATUS, TOGGLED)
    assert rig.status & vd.DEVICE_NEEDS_RESET and not rig.device.serving
    for index, q in enumerate(rig.device.queues):
        rig.write(Reg.QUEUE_SELECT, index)
        rig.write(Reg.QUEUE_SIZE, 0x11)
        rig.write(Reg.QUEUE_ENABLE, 1)
        assert q.size == 16 and rig.read(Reg.QUEUE_SIZE) == 16
        desc, avail, used = ring(index)
        rig.desc(desc, 0, 0x80000, 8, VIRTQ_DESC_F_WRITE)
        rig.offer(avail, 16, [0])
        rig.notify(index)
        assert rig.used_idx(used) == 0  # nothing served


def test_1_a_queue_is_validated_when_enabled() -> None:
    rig = rng_rig()
    rig.negotiate()
    rig.setup_queue(0, 0x11, *ring(0))
    assert rig.status & vd.DEVICE_NEEDS_RESET and not rig.device.queues[0].ready
    assert "power of two" in (rig.device.broken or "")


def test_2_the_hang_sequence_is_refused_and_a_flood_on_a_valid_queue_is_served_in_bounded_turns() -> None:
    rig = rng_rig(4 << 20)
    bring_up(rig)
    rig.write(Reg.DEVICE_STATUS, TOGGLED)
    rig.setup_queue(0, 0xFFFF, 0x200000, 0x300000, 0x380000)
    assert rig.device.queues[0].size == 16 and rig.status & vd.DEVICE_NEEDS_RESET
    # the same flood on the largest valid queue: every descriptor chained, zero-length, every entry head 0
    rig.write(Reg.DEVICE_STATUS, 0)
    rig.mem.write(0x200000, bytes(0x180000))
    rig.negotiate()
    rig.setup_queue(0, 256, 0x200000, 0x300000, 0x380000)
    rig.driver_ok()
    for i in range(256):
        rig.desc(0x200000, i, 0x100000, 0, VIRTQ_DESC_F_WRITE | (VIRTQ_DESC_F_NEXT if i < 255 else 0), i + 1)
    rig.offer(0x300000, 256, [0] * 256)
    deferred: list[Callable[[], None]] = []
    rig.device.defer = deferred.append
    started = time.monotonic()
    rig.notify(0)  # as a vCPU's MMIO exit or the ioeventfd thread would
    assert time.monotonic() - started < 0.5
    assert 0 < rig.used_idx(0x380000) < 256 and deferred  # one turn, the rest deferred
    assert lock_is_free(rig.device)
    turns = 1
    while deferred:
        deferred.pop(0)()
        turns += 1
    assert rig.used_idx(0x380000) == 256 and turns > 2 and not rig.status & vd.DEVICE_NEEDS_RESET


def test_2_without_a_scheduler_a_notify_still_returns_in_bounded_time() -> None:
    rig = rng_rig(4 << 20)
    rig.negotiate()
    rig.setup_queue(0, 256, 0x200000, 0x300000, 0x380000)
    rig.driver_ok()
    for i in range(256):
        rig.desc(0x200000, i, 0x100000, 0, VIRTQ_DESC_F_WRITE | (VIRTQ_DESC_F_NEXT if i < 255 else 0), i + 1)
    rig.offer(0x300000, 256, [0] * 256)
    started = time.monotonic()
    rig.notify(0)
    assert time.monotonic() - started < 0.1 * vd.INLINE_TURNS + 0.5
    while rig.device.deferred:
        rig.device.run_deferred()
    assert rig.used_idx(0x380000) == 256


def test_3_host_input_never_raises_and_the_port_works_again_after_a_reset() -> None:
    rig, _, _ = console_rig()
    dev = rig.device
    assert isinstance(dev, vc.Console)
    bring_up(rig, features=CONSOLE_FEATURES)
    rig.write(Reg.DEVICE_STATUS, TOGGLED)  # the reproduction: toggle, then a used ring at the end of RAM
    rig.setup_queue(4, 16, 0x10000, 0x11000, rig.memory_size - 0x10)
    dev.ports[1].guest_open = True
    assert dev.input(1, b"hello") == 5  # held, not raised
    # the deeper hole: a used ring that went bad after validation (the element write is outside RAM)
    rig.write(Reg.DEVICE_STATUS, 0)
    bring_up(rig, features=CONSOLE_FEATURES)
    control(rig, 1, vc.PORT_OPEN, 1)
    rx_buffers(rig, 4)
    dev.queues[4].used_ring = rig.memory_size - 0x10
    assert dev.input(1, b"hello") == 5
    assert rig.status & vd.DEVICE_NEEDS_RESET
    # the driver resets and starts over: host input reaches it again
    rig.write(Reg.DEVICE_STATUS, 0)
    bring_up(rig, features=CONSOLE_FEATURES)
    control(rig, 1, vc.PORT_OPEN, 1)
    rx_buffers(rig, 4)
    dev.input(1, b"again")
    _, _, used = ring(4)
    assert rig.used_idx(used) == 1 and rig.mem.read(0xA0000, 5) == b"again"


def test_3_a_used_element_outside_ram_is_a_virtqueue_error() -> None:
    rig = rng_rig()
    q = SplitQueue(16)
    q.size, q.used_ring = 16, rig.memory_size - 6  # the index fits, the element does not
    with pytest.raises(VirtqueueError):
        q.push(rig.mem, 0, 8)


def test_3_the_agent_bridge_survives_a_failing_guest_side(tmp_path: Path) -> None:
    got: list[bytes] = []

    def deliver(data: bytes) -> None:
        if data == b"boom":
            raise RuntimeError("what a broken device would raise")
        got.append(data)

    bridge = SocketBridge(tmp_path / "agent.sock", deliver)
    try:
        for word in (b"boom", b"after"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(str(bridge.path))
                s.sendall(word)
                deadline = time.monotonic() + 5
                while bridge.errors == 0 and not got and time.monotonic() < deadline:
                    time.sleep(0.01)
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert got == [b"after"] and bridge.errors == 1 and bridge._thread.is_alive()
    finally:
        bridge.close()


def test_4_console_tx_is_bounded_per_turn() -> None:
    rig, _, agent = console_rig(2 << 20)
    bring_up(rig, features=CONSOLE_FEATURES)
    desc, avail, used = ring(5)  # port 1's transmitq
    chunk = 200 * 1024
    for i in range(16):
        rig.desc(desc, i, 0x100000, chunk)
    rig.offer(avail, 16, list(range(16)))
    deferred: list[Callable[[], None]] = []
    rig.device.defer = deferred.append
    started = time.monotonic()
    rig.notify(5)
    assert time.monotonic() - started < 0.5
    assert len(agent.data) <= rig.device.budget.bytes + chunk and deferred
    while deferred:
        deferred.pop(0)()
    assert rig.used_idx(used) == 16 and len(agent.data) == 16 * chunk


def test_4_a_transmit_chain_over_the_cap_needs_reset() -> None:
    rig, _, agent = console_rig(2 << 20)
    bring_up(rig, features=CONSOLE_FEATURES)
    desc, avail, _ = ring(5)
    rig.desc(desc, 0, 0, vc.MAX_TX_CHAIN + 1)
    rig.offer(avail, 16, [0])
    rig.notify(5)
    assert rig.status & vd.DEVICE_NEEDS_RESET and agent.data == b""


def test_4_a_slow_host_reader_leaves_the_buffers_in_the_queue() -> None:
    rig, _, agent = console_rig()
    bring_up(rig, features=CONSOLE_FEATURES)
    agent.room_left = 0
    desc, avail, used = ring(5)
    rig.mem.write(0x80000, b"ping")
    rig.desc(desc, 0, 0x80000, 4)
    rig.offer(avail, 16, [0])
    rig.notify(5)
    assert rig.used_idx(used) == 0 and agent.data == b"" and lock_is_free(rig.device)
    agent.room_left = None
    dev = rig.device
    assert isinstance(dev, vc.Console)
    dev.resume_output(1)  # what the bridge does when its client drained
    assert rig.used_idx(used) == 1 and agent.data == b"ping"


def test_5_failed_with_features_never_accepted_does_not_activate() -> None:
    rig = rng_rig()
    rig.setup_queue(0, 16, *ring(0))
    rig.write(Reg.DEVICE_STATUS, 0xFF)
    assert not rig.device.activated and not rig.device.serving
    assert not rig.status & vd.FEATURES_OK
    assert rng_request(rig) == 0


# --- the rules ---------------------------------------------------------------------------------------------


def test_failed_stops_a_running_device_until_reset() -> None:
    rig = rng_rig()
    bring_up(rig)
    assert rng_request(rig) == 1
    rig.write(Reg.DEVICE_STATUS, OK | vd.FAILED)
    assert rng_request(rig) == 1 and not rig.status & vd.DEVICE_NEEDS_RESET
    rig.write(Reg.DEVICE_STATUS, 0)
    rig.mem.write(0x1000, bytes(0x2000))
    bring_up(rig)
    assert rng_request(rig) == 1


def test_driver_ok_without_features_ok_needs_reset() -> None:
    rig = rng_rig()
    rig.write(Reg.DEVICE_STATUS, vd.ACKNOWLEDGE | vd.DRIVER)
    rig.setup_queue(0, 16, *ring(0))
    rig.write(Reg.DEVICE_STATUS, vd.ACKNOWLEDGE | vd.DRIVER | vd.DRIVER_OK)
    assert rig.status & vd.DEVICE_NEEDS_RESET and not rig.device.activated


def test_features_are_frozen_after_features_ok() -> None:
    rig = rng_rig()
    rig.negotiate(vd.VIRTIO_F_VERSION_1)
    rig.write(Reg.DRIVER_FEATURE_SELECT, 0)
    rig.write(Reg.DRIVER_FEATURE, vd.VIRTIO_F_EVENT_IDX)
    assert rig.device.driver_features == vd.VIRTIO_F_VERSION_1


def test_queue_fields_are_frozen_once_driver_ok_is_set() -> None:
    rig = rng_rig()
    bring_up(rig)
    rig.write(Reg.QUEUE_SELECT, 0)
    rig.write(Reg.QUEUE_DESC_LO, 0x50000)
    rig.write(Reg.QUEUE_SIZE, 8)
    q = rig.device.queues[0]
    assert q.desc_table == ring(0)[0] and q.size == 16 and rng_request(rig) == 1


def test_the_needs_reset_bit_is_the_devices_and_setting_bits_is_fine() -> None:
    rig = rng_rig()
    rig.write(Reg.DEVICE_STATUS, vd.ACKNOWLEDGE | vd.DEVICE_NEEDS_RESET)
    assert rig.status == vd.ACKNOWLEDGE
    rig.write(Reg.DEVICE_STATUS, vd.ACKNOWLEDGE | vd.DRIVER)
    assert rig.status == vd.ACKNOWLEDGE | vd.DRIVER and rig.device.broken is None


def test_a_queue_that_went_bad_is_checked_again_before_it_is_served() -> None:
    rig = rng_rig()
    bring_up(rig)
    rig.device.queues[0].avail_ring = rig.memory_size - 2  # behind the transport's back
    rng_request(rig)
    assert rig.status & vd.DEVICE_NEEDS_RESET


def test_an_interrupt_the_host_cannot_deliver_costs_the_device_not_the_thread() -> None:
    rig = rng_rig()
    bring_up(rig)
    rig.enable_msix()

    def refuse(address: int, data: int) -> None:
        raise OSError("the irqfd is gone")

    rig.fn.msix.send = refuse
    rng_request(rig)  # does not raise
    assert rig.status & vd.DEVICE_NEEDS_RESET


# --- the fuzzer, short --------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["rng", "console"])
@pytest.mark.parametrize("seed", [1, 2])
def test_state_machine_fuzz_short(target: str, seed: int) -> None:
    stats = Fuzzer(target, seed).run(3000)
    assert stats.escaped == [] and stats.slow == []
    assert stats.needs_reset > 0 and stats.serving > 0  # it reached both sides of the state machine
    assert stats.worst_s < 1.0


def test_host_input_racing_guest_resets() -> None:
    fed, errors = race_input_with_resets(1.0)
    assert errors == [] and fed > 0


# --- the agent bridge with a real console port ---------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def bridged_console(tmp_path: Path) -> tuple[PciRig, vc.Console, SocketBridge]:
    bridge = SocketBridge(tmp_path / "agent.sock", lambda data: None)
    dev = vc.Console([vc.Port(None, lambda data: None), vc.Port("org.qemu.guest_agent.0", bridge.output, bridge.room)])
    rig = PciRig(dev, 2 << 20)
    bridge.deliver = lambda data: dev.input(1, data)
    bridge.on_drain = lambda: dev.resume_output(1)
    return rig, dev, bridge


def test_the_bridge_keeps_working_across_a_broken_device_and_a_reset(tmp_path: Path) -> None:
    rig, dev, bridge = bridged_console(tmp_path)
    try:
        bring_up(rig, features=CONSOLE_FEATURES)
        control(rig, 1, vc.PORT_OPEN, 1)
        rx_buffers(rig, 4)
        dev.queues[4].used_ring = rig.memory_size - 0x10  # the guest's used ring went bad
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(bridge.path))
            s.sendall(b"first")
            wait_until(lambda: bool(rig.status & vd.DEVICE_NEEDS_RESET))
            rig.write(Reg.DEVICE_STATUS, 0)  # the driver resets and starts over
            bring_up(rig, features=CONSOLE_FEATURES)
            control(rig, 1, vc.PORT_OPEN, 1)
            rx_buffers(rig, 4)
            s.sendall(b"second")
            wait_until(lambda: rig.used_idx(ring(4)[2]) == 1)
            assert rig.mem.read(0xA0000, 6) == b"second" and bridge._thread.is_alive()
    finally:
        bridge.close()


def test_a_client_that_does_not_read_holds_the_guests_transmit_buffers(tmp_path: Path) -> None:
    rig, dev, bridge = bridged_console(tmp_path)
    try:
        bring_up(rig, features=CONSOLE_FEATURES)
        desc, avail, used = ring(5)
        chunk = 128 * 1024
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(str(bridge.path))
            wait_until(lambda: bridge._client is not None)
            for i in range(16):  # 2 MiB offered, more than the socket and the bridge's buffer hold
                rig.desc(desc, i, 0x100000, chunk)
            rig.offer(avail, 16, list(range(16)))
            started = time.monotonic()
            rig.notify(5)
            dev.run_deferred()
            assert time.monotonic() - started < 0.5  # nothing blocked on the client
            held = 16 - rig.used_idx(used)
            assert held > 0 and bridge.room() <= 0 and lock_is_free(dev)
            s.settimeout(5)
            got = 0
            while got < 16 * chunk:  # the client reads: the bridge drains and the port takes the rest
                data = s.recv(1 << 16)
                assert data, "the bridge closed the client"
                got += len(data)
            assert rig.used_idx(used) == 16
    finally:
        bridge.close()
