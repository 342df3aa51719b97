"""A built, runnable machine: its VM, memory, buses, devices and vCPU threads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from virtkit.devices.bus import Bus
from virtkit.devices.serial import Serial
from virtkit.hypervisor.base import Vm
from virtkit.machine.config import Outcome
from virtkit.machine.vcpu import ExitDispatcher, VcpuState, VcpuThread
from virtkit.memory import GuestMemory

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Statistics:
    exits: dict[str, int]
    unclaimed: int
    unclaimed_sample: dict[int, int]
    device_errors: int
    entry: str
    paravirt_features: tuple[str, ...] = field(default=())
    top_ports: tuple[tuple[int, int], ...] = field(default=())  # (port, exits), busiest first


class Vmm:
    serial: Serial  # COM1, attached by the builder

    def __init__(
        self,
        vm: Vm,
        memory: GuestMemory,
        pio: Bus,
        mmio: Bus,
        entry: str,
        paravirt_features: tuple[str, ...] = (),
    ) -> None:
        self.vm = vm
        self.memory = memory
        self.pio = pio
        self.mmio = mmio
        self.entry = entry
        self.paravirt_features = paravirt_features
        self.dispatcher = ExitDispatcher(pio, mmio)
        self.threads: list[VcpuThread] = []
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._outcome: Outcome | None = None
        self._closed = False
        # presses the guest's ACPI power button; None when the machine has no ACPI
        self.power_button: Callable[[], None] | None = None

    def add_vcpu_thread(self, thread: VcpuThread) -> None:
        self.threads.append(thread)

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self, paused: bool = False) -> None:
        for t in self.threads:
            t.start(paused)

    def pause(self, timeout: float = 10.0) -> bool:
        for t in self.threads:
            t.pause()
        return all(t.wait_for({VcpuState.PAUSED, VcpuState.FINISHED}, timeout) for t in self.threads)

    def resume(self) -> None:
        for t in self.threads:
            t.resume()

    @property
    def paused(self) -> bool:
        return bool(self.threads) and all(t.state is VcpuState.PAUSED for t in self.threads)

    def finish(self, outcome: Outcome) -> None:
        """End the machine with ``outcome`` (the first reason wins); safe from any thread, vCPUs included."""
        with self._lock:
            if self._outcome is None:
                self._outcome = outcome
        for t in self.threads:
            t.stop()
        if all(t.state is VcpuState.FINISHED for t in self.threads):
            self._done.set()

    def wait(self, timeout: float | None = None) -> Outcome | None:
        if not self._done.wait(timeout):
            return None
        return self._outcome

    def stop(self, timeout: float = 10.0) -> Outcome | None:
        self.finish(Outcome("stopped", "stopped on request"))
        return self.wait(timeout)

    def statistics(self) -> Statistics:
        return Statistics(
            exits=dict(self.dispatcher.counts),
            unclaimed=self.dispatcher.unclaimed,
            unclaimed_sample=dict(self.dispatcher.unclaimed_sample),
            device_errors=self.dispatcher.device_errors,
            entry=self.entry,
            paravirt_features=self.paravirt_features,
            top_ports=tuple(self.dispatcher.ports.most_common(8)),
        )

    def close(self) -> None:
        if self._closed:
            return
        self.finish(Outcome("stopped", "closed"))
        for t in self.threads:
            t.join(10.0)
        self._closed = True
        if any(t.alive for t in self.threads):
            # a vCPU that ignored its kick may still touch kvm_run and guest RAM: leak them, never crash
            log.error("a vCPU thread did not stop; leaving its VM mapped")
            return
        for t in self.threads:
            t.vcpu.close()
        self.vm.close()
        self.memory.close()
