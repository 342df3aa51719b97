"""The lifecycle interface every engine meets.

The management layer only ever sees :class:`Engine` and :class:`Machine`; which engine runs a VM is
reported (``engine``/``technique``) but never branched on above this package.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from virtkit.agent.client import AgentClient
    from virtkit.config.machine import MachineSpec


class VmState(enum.StrEnum):
    SHUTOFF = "shut off"
    RUNNING = "running"
    PAUSED = "paused"
    CRASHED = "crashed"


class Technique(enum.StrEnum):
    HARDWARE = "hardware-assisted (KVM)"
    BINARY_TRANSLATION = "binary translation (TCG)"
    PVM = "paravirtualized guest kernel (KVM-PVM)"


@dataclass(frozen=True)
class Availability:
    """Whether an engine can run an unmodified guest on this host, how, and why (or why not)."""

    usable: bool
    technique: Technique | None
    reason: str


@runtime_checkable
class Machine(Protocol):
    """A started virtual machine. Methods block until the action is done (trio's ``wait_*`` habit)."""

    @property
    def name(self) -> str: ...

    @property
    def engine(self) -> str: ...

    @property
    def technique(self) -> Technique: ...

    @property
    def pid(self) -> int | None: ...

    @property
    def console_log(self) -> Path: ...

    def status(self) -> VmState: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def reboot(self) -> None: ...

    def shutdown(self, timeout: float = ...) -> None:
        """Ask the guest to power off (ACPI power button); destroy it if it has not after ``timeout``."""

    def destroy(self) -> None:
        """Stop the machine at once and release everything it held. Idempotent."""

    def wait(self, timeout: float | None = None) -> VmState:
        """Wait until the machine has stopped; returns its final state."""

    def agent(self) -> AgentClient: ...

    def detach(self) -> None:
        """Close this process's control connections and leave the machine running."""

    def wait_ready(self, timeout: float = ...) -> float:
        """Block until the guest agent answers; returns seconds waited. Raises GuestTimeout (with the
        console's last lines) if it does not, or if the machine stops first."""

    def console(self) -> str:
        """What the guest has written to its serial console so far."""


class Engine(Protocol):
    name: str

    def availability(self) -> Availability: ...

    def start(self, spec: MachineSpec, workdir: Path, die_with_parent: bool = False) -> Machine:
        """Start ``spec`` with its run files in ``workdir``. ``die_with_parent`` ties the machine's
        lifetime to the calling process (a one-shot run) instead of letting it outlive it."""
