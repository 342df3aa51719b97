"""vCPU threads: each runs guest code (treated as hostile) and dispatches its exits to the buses.

A thread moves through Created -> Running <-> Paused -> Finished. Requests from other threads set the wanted
state under a lock and kick the vCPU; the thread clears the kick only after it has seen the request, so a
kick can never be lost between the check and KVM_RUN.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections import Counter
from collections.abc import Callable

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
    Vcpu,
)
from virtkit.machine.config import Outcome

log = logging.getLogger(__name__)

# What an unclaimed port reads as: 0xff (a floating ISA bus) everywhere.
UNCLAIMED = 0xFF
UNCLAIMED_SAMPLE = 16


class ExitDispatcher:
    """Turns one exit into bus accesses; returns an Outcome when the machine must stop."""

    def __init__(self, pio: Bus, mmio: Bus) -> None:
        self.pio = pio
        self.mmio = mmio
        self.counts: Counter[str] = Counter()
        self.ports: Counter[int] = Counter()  # exits per I/O port: bounded by the 64 Ki ports
        self.unclaimed = 0
        # the first few unclaimed addresses, for diagnosis; bounded so a guest cannot grow it
        self.unclaimed_sample: dict[int, int] = {}
        self.device_errors = 0

    def handle(self, vcpu: Vcpu, exit: Exit) -> Outcome | None:
        match exit:
            case IoOut(port, size, data):
                self.counts["io_out"] += 1
                self.ports[port] += 1
                for i in range(0, len(data), size or 1):
                    self._write(self.pio, port, data[i : i + size])
            case IoIn(port, size, count):
                self.counts["io_in"] += 1
                self.ports[port] += 1
                vcpu.complete_in(self._read(self.pio, port, size) * count)
            case MmioWrite(address, data):
                self.counts["mmio_write"] += 1
                self._write(self.mmio, address, data)
            case MmioRead(address, size):
                self.counts["mmio_read"] += 1
                vcpu.complete_in(self._read(self.mmio, address, size))
            case Interrupted():
                self.counts["interrupted"] += 1
            case Halt():
                # only without an in-kernel irqchip; nothing will ever wake the vCPU
                return Outcome("poweroff", "the vCPU halted")
            case Shutdown():
                return Outcome("reset", "triple fault")
            case SystemEvent(kind):
                if kind == "shutdown":
                    return Outcome("poweroff", "the guest powered off")
                if kind == "reset":
                    return Outcome("reset", "the guest reset")
                return Outcome("crashed", f"system event: {kind}")
            case Failed(reason):
                return Outcome("crashed", reason)
        return None

    def _write(self, bus: Bus, address: int, data: bytes) -> None:
        try:
            if not bus.write(address, data):
                self._unclaimed(address)
        except Exception:  # a device bug must not take the VMM down with the guest
            self.device_errors += 1
            log.exception("%s write %#x <- %s failed", bus.name, address, data.hex())

    def _unclaimed(self, address: int) -> None:
        self.unclaimed += 1
        if address in self.unclaimed_sample or len(self.unclaimed_sample) < UNCLAIMED_SAMPLE:
            self.unclaimed_sample[address] = self.unclaimed_sample.get(address, 0) + 1

    def _read(self, bus: Bus, address: int, size: int) -> bytes:
        try:
            data = bus.read(address, size)
        except Exception:
            self.device_errors += 1
            log.exception("%s read %#x/%d failed", bus.name, address, size)
            data = None
        if data is None:
            self._unclaimed(address)
            return bytes([UNCLAIMED]) * size
        return data[:size].ljust(size, b"\xff")


class _Stop(Exception):
    pass


class VcpuState(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"


class VcpuThread:
    def __init__(self, vcpu: Vcpu, dispatcher: ExitDispatcher, on_outcome: Callable[[Outcome], None]) -> None:
        self.vcpu = vcpu
        self._dispatcher = dispatcher
        self._on_outcome = on_outcome
        self._cond = threading.Condition()
        self._state = VcpuState.CREATED
        self._want = VcpuState.RUNNING
        self._thread = threading.Thread(target=self._main, name=f"vcpu{vcpu.index}", daemon=True)

    @property
    def state(self) -> VcpuState:
        with self._cond:
            return self._state

    def start(self, paused: bool = False) -> None:
        with self._cond:
            self._want = VcpuState.PAUSED if paused else VcpuState.RUNNING
        self._thread.start()

    def _request(self, want: VcpuState) -> None:
        with self._cond:
            if self._state is VcpuState.FINISHED:
                return
            self._want = want
            self._cond.notify_all()
            if want is not VcpuState.RUNNING:
                self.vcpu.kick()

    def pause(self) -> None:
        self._request(VcpuState.PAUSED)

    def resume(self) -> None:
        self._request(VcpuState.RUNNING)

    def stop(self) -> None:
        self._request(VcpuState.FINISHED)

    def wait_for(self, states: set[VcpuState], timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._state in states, timeout)

    def join(self, timeout: float | None = None) -> None:
        if self._thread.ident is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _settle(self) -> bool:
        """Honour requests before entering the guest; False when the thread must end."""
        with self._cond:
            while self._want is VcpuState.PAUSED:
                if self._state is not VcpuState.PAUSED:
                    self._state = VcpuState.PAUSED
                    self._cond.notify_all()
                self._cond.wait()
            if self._want is VcpuState.FINISHED:
                return False
            if self._state is not VcpuState.RUNNING:
                self._state = VcpuState.RUNNING
                self._cond.notify_all()
            self.vcpu.clear_kick()
            return True

    def _main(self) -> None:
        outcome = Outcome("stopped", "stopped on request")
        vcpu, handle, running = self.vcpu, self._dispatcher.handle, VcpuState.RUNNING
        try:
            if not self._settle():
                raise _Stop
            while True:
                exit = vcpu.run()
                result = handle(vcpu, exit)
                if result is not None:
                    outcome = result
                    break
                # Fast path without the lock: nothing was requested since the last look. A request that
                # lands right after this check has already set immediate_exit, so KVM_RUN returns at once
                # and the next exit (Interrupted) takes the slow path, which clears the kick under the lock.
                if (exit.__class__ is Interrupted or self._want is not running) and not self._settle():
                    break
        except _Stop:
            pass
        except Exception as e:  # the hypervisor failed under us: report, never hang
            log.exception("vCPU %d failed", self.vcpu.index)
            outcome = Outcome("crashed", f"vCPU {self.vcpu.index}: {e}")
        with self._cond:
            self._state = VcpuState.FINISHED
            self._cond.notify_all()
        self._on_outcome(outcome)
