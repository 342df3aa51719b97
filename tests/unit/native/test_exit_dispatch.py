from __future__ import annotations

import threading

import pytest

from virtkit.devices.bus import Bus
from virtkit.hypervisor.base import (
    Exit,
    Failed,
    Halt,
    Interrupted,
    IoIn,
    IoOut,
    MmioRead,
    MmioWrite,
    Shutdown,
    SystemEvent,
)
from virtkit.hypervisor.fake import FakeVcpu
from virtkit.machine.config import Outcome
from virtkit.machine.vcpu import ExitDispatcher, VcpuState, VcpuThread


class Device:
    def __init__(self) -> None:
        self.writes: list[tuple[int, bytes]] = []

    def read(self, offset: int, size: int) -> bytes:
        return bytes(range(offset, offset + size))

    def write(self, offset: int, data: bytes) -> None:
        self.writes.append((offset, data))


class Broken:
    def read(self, offset: int, size: int) -> bytes:
        raise RuntimeError("device bug")

    def write(self, offset: int, data: bytes) -> None:
        raise RuntimeError("device bug")


def buses() -> tuple[Bus, Bus, Device, Device]:
    pio, mmio = Bus("pio", 0x10000), Bus("mmio", 1 << 48)
    port, mem = Device(), Device()
    pio.insert(port, 0x3F8, 8)
    mmio.insert(mem, 0xD0000000, 0x1000)
    return pio, mmio, port, mem


def test_port_and_mmio_exits_reach_their_devices() -> None:
    pio, mmio, port, mem = buses()
    d = ExitDispatcher(pio, mmio)
    vcpu = FakeVcpu(0)
    assert d.handle(vcpu, IoOut(0x3F9, 1, b"\x03")) is None
    assert d.handle(vcpu, IoIn(0x3FA, 2)) is None
    assert d.handle(vcpu, MmioWrite(0xD0000010, b"\x01\x02\x03\x04")) is None
    assert d.handle(vcpu, MmioRead(0xD0000004, 4)) is None
    assert port.writes == [(1, b"\x03")]
    assert mem.writes == [(0x10, b"\x01\x02\x03\x04")]
    assert vcpu.answers == [b"\x02\x03", b"\x04\x05\x06\x07"]
    assert d.counts == {"io_out": 1, "io_in": 1, "mmio_write": 1, "mmio_read": 1}


def test_rep_outs_is_split_into_items_and_rep_ins_answers_every_item() -> None:
    pio, mmio, port, _ = buses()
    d = ExitDispatcher(pio, mmio)
    vcpu = FakeVcpu(0)
    d.handle(vcpu, IoOut(0x3F8, 1, b"abc"))
    d.handle(vcpu, IoIn(0x3F8, 1, items=3))
    assert port.writes == [(0, b"a"), (0, b"b"), (0, b"c")]
    assert vcpu.answers == [b"\x00\x00\x00"]


def test_unclaimed_reads_float_high_and_are_counted_within_a_bound() -> None:
    pio, mmio, _, _ = buses()
    d = ExitDispatcher(pio, mmio)
    vcpu = FakeVcpu(0)
    for port in range(1000):
        d.handle(vcpu, IoIn(0x1000 + port, 4))
    d.handle(vcpu, MmioRead(0xFEBF0000, 8))
    assert vcpu.answers[0] == b"\xff" * 4 and vcpu.answers[-1] == b"\xff" * 8
    assert d.unclaimed == 1001
    assert len(d.unclaimed_sample) <= 16


def test_a_failing_device_does_not_take_the_vmm_down() -> None:
    pio, mmio = Bus("pio", 0x10000), Bus("mmio", 1 << 48)
    pio.insert(Broken(), 0x70, 2)
    d = ExitDispatcher(pio, mmio)
    vcpu = FakeVcpu(0)
    assert d.handle(vcpu, IoOut(0x70, 1, b"\x00")) is None
    assert d.handle(vcpu, IoIn(0x71, 1)) is None
    assert vcpu.answers == [b"\xff"]
    assert d.device_errors == 2


@pytest.mark.parametrize(
    ("exit", "kind"),
    [
        (Shutdown(), "reset"),
        (SystemEvent("reset"), "reset"),
        (SystemEvent("shutdown"), "poweroff"),
        (SystemEvent("crash"), "crashed"),
        (Failed("KVM internal error"), "crashed"),
        (Halt(), "poweroff"),
    ],
)
def test_ending_exits_become_outcomes(exit: Exit, kind: str) -> None:
    pio, mmio, _, _ = buses()
    outcome = ExitDispatcher(pio, mmio).handle(FakeVcpu(0), exit)
    assert outcome is not None and outcome.kind == kind


def test_interrupted_is_not_an_outcome() -> None:
    pio, mmio, _, _ = buses()
    assert ExitDispatcher(pio, mmio).handle(FakeVcpu(0), Interrupted()) is None


class BlockingVcpu(FakeVcpu):
    """Runs 'guest code' until kicked, like KVM_RUN in a halted guest."""

    def __init__(self) -> None:
        super().__init__(0)
        self.entered = threading.Event()

    def run(self) -> Exit:
        self.entered.set()
        self._kicked.wait()
        return Interrupted()


def test_vcpu_thread_pauses_resumes_and_stops_through_kicks() -> None:
    pio, mmio, _, _ = buses()
    vcpu = BlockingVcpu()
    outcomes: list[Outcome] = []
    thread = VcpuThread(vcpu, ExitDispatcher(pio, mmio), outcomes.append)
    thread.start()
    assert vcpu.entered.wait(5)
    assert thread.state is VcpuState.RUNNING
    thread.pause()
    assert thread.wait_for({VcpuState.PAUSED}, 5)
    vcpu.entered.clear()
    thread.resume()
    assert vcpu.entered.wait(5)
    assert thread.state is VcpuState.RUNNING
    thread.stop()
    assert thread.wait_for({VcpuState.FINISHED}, 5)
    thread.join(5)
    assert outcomes == [Outcome("stopped", "stopped on request")]


def test_vcpu_thread_reports_the_guest_ending() -> None:
    pio, mmio, port, _ = buses()
    vcpu = FakeVcpu(0, [IoOut(0x3F8, 1, b"x"), SystemEvent("shutdown")])
    outcomes: list[Outcome] = []
    thread = VcpuThread(vcpu, ExitDispatcher(pio, mmio), outcomes.append)
    thread.start()
    assert thread.wait_for({VcpuState.FINISHED}, 5)
    thread.join(5)
    assert port.writes == [(0, b"x")]
    assert [o.kind for o in outcomes] == ["poweroff"]


def test_vcpu_thread_turns_a_hypervisor_failure_into_a_crash() -> None:
    class Exploding(FakeVcpu):
        def run(self) -> Exit:
            raise OSError("KVM_RUN: bad address")

    outcomes: list[Outcome] = []
    pio, mmio, _, _ = buses()
    thread = VcpuThread(Exploding(0), ExitDispatcher(pio, mmio), outcomes.append)
    thread.start()
    assert thread.wait_for({VcpuState.FINISHED}, 5)
    assert outcomes[0].kind == "crashed" and "bad address" in outcomes[0].reason
