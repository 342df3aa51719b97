"""Run one machine for its whole life: build it, run it, build it again after a guest reset (when asked to),
until it powers off, crashes or is stopped. Pause, resume, stop, reboot and console input come from other
threads (the control channel, the terminal)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

from virtkit.hypervisor.base import Hypervisor
from virtkit.machine.agent_socket import SocketBridge, listen
from virtkit.machine.builder import build
from virtkit.machine.config import Outcome, VmmConfig
from virtkit.machine.console import ConsoleSink
from virtkit.machine.vmm import Statistics, Vmm

State = Literal["starting", "running", "paused", "shut off", "crashed"]
INPUT_PATIENCE_S = 5.0


class Runner:
    def __init__(
        self,
        config: VmmConfig,
        hypervisor: Callable[[], Hypervisor],
        console: ConsoleSink,
        mem_available_mib: int | None = None,
    ) -> None:
        self.config = config
        self._hypervisor = hypervisor
        self.console = console
        self._mem_available_mib = mem_available_mib
        self._lock = threading.RLock()
        self._vmm: Vmm | None = None
        self._stopping = False
        self._restart_requested = False
        self._state: State = "starting"
        self.boots = 0
        self.outcome: Outcome | None = None
        self.last_statistics: Statistics | None = None
        self.first_boot_started = threading.Event()
        self.timings: dict[str, float] = {}  # seconds: build (first boot), first_byte and run (from start())
        self._created = time.monotonic()

    @property
    def state(self) -> State:
        with self._lock:
            return self._state

    def run(self) -> Outcome:
        # the agent's socket lives as long as the machine, across guest reboots
        agent = listen(self.config.agent_socket) if self.config.agent_socket is not None else None
        try:
            return self._run(agent)
        finally:
            if agent is not None:
                agent.close()

    def _run(self, agent: SocketBridge | None) -> Outcome:
        hypervisor = self._hypervisor()
        while True:
            with self._lock:
                if self._stopping:
                    outcome = Outcome("stopped", "stopped before boot")
                    break
                t0 = time.monotonic()
                vmm = build(self.config, hypervisor, self.console.write, self._mem_available_mib, agent)
                self.timings.setdefault("build", time.monotonic() - t0)
                self._vmm = vmm
                self._restart_requested = False
                self._state = "running"
                self.boots += 1
                vmm.start()
            self.first_boot_started.set()
            result = None
            while result is None:
                result = vmm.wait(0.5)  # a timeout keeps the main thread responsive to signals
            with self._lock:
                self.last_statistics = vmm.statistics()
                vmm.close()
                self._vmm = None
                restart = self._restart_requested or (result.kind == "reset" and self.config.on_reset == "restart")
                if restart and not self._stopping:
                    continue
                outcome = result
                break
        with self._lock:
            self.outcome = outcome
            if self.console.first_byte_at is not None:
                self.timings["first_byte"] = self.console.first_byte_at - self._created
            self.timings["run"] = time.monotonic() - self._created
            self._state = "crashed" if outcome.kind == "crashed" else "shut off"
        self.first_boot_started.set()
        return outcome

    # --- requests from other threads -------------------------------------------------------------------

    def pause(self) -> None:
        with self._lock:
            if self._vmm is not None and self._state == "running":
                self._vmm.pause()
                self._state = "paused"

    def resume(self) -> None:
        with self._lock:
            if self._vmm is not None and self._state == "paused":
                self._vmm.resume()
                self._state = "running"

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            if self._vmm is not None:
                self._vmm.finish(Outcome("stopped", "stopped on request"))

    def reboot(self) -> None:
        with self._lock:
            if self._vmm is not None:
                self._restart_requested = True
                if self._state == "paused":
                    self._vmm.resume()
                self._vmm.finish(Outcome("reset", "reboot requested"))

    def power_button(self) -> bool:
        """Press the guest's ACPI power button; False when there is none (no ACPI, or between boots)."""
        with self._lock:
            vmm = self._vmm
            if vmm is None or vmm.power_button is None:
                return False
            if self._state == "paused":
                vmm.resume()
                self._state = "running"
        vmm.power_button()
        return True

    def send_input(self, data: bytes) -> int:
        """Feed console input to the UART as its receive FIFO drains; returns the bytes delivered."""
        sent = 0
        deadline = time.monotonic() + INPUT_PATIENCE_S
        while sent < len(data) and time.monotonic() < deadline:
            with self._lock:
                vmm, state = self._vmm, self._state
            if vmm is None:
                if state in ("shut off", "crashed"):
                    break
                time.sleep(0.01)  # still starting, or between boots
                continue
            n = vmm.serial.enqueue(data[sent:])
            sent += n
            if n == 0:
                time.sleep(0.005)
        return sent

    def status(self) -> dict[str, object]:
        with self._lock:
            vmm = self._vmm
            stats = vmm.statistics() if vmm is not None else self.last_statistics
        info: dict[str, object] = {"state": self.state, "boots": self.boots}
        if stats is not None:
            info.update(
                entry=stats.entry,
                exits=stats.exits,
                unclaimed=stats.unclaimed,
                device_errors=stats.device_errors,
                paravirt_features=list(stats.paravirt_features),
            )
        if self.outcome is not None:
            info.update(outcome=self.outcome.kind, reason=self.outcome.reason)
        return info
