"""The lifecycle interface every engine meets.

The management layer only ever sees :class:`Engine` and :class:`Machine`; which engine runs a VM is
reported (``engine``/``technique``) but never branched on above this package.

Optional abilities (snapshots, statistics, console input, and later disk/NIC hotplug and migration) are
methods of every machine, as in Cloud Hypervisor's ``Vm`` trait, never probed with ``getattr``: a machine
that lacks one raises :class:`~virtkit.errors.Unsupported` (with a hint saying what to do instead), and
:meth:`Machine.capabilities` says up front which ones it has. :class:`MachineBase` supplies the refusals,
so an engine overrides only what it can do.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from virtkit.errors import AgentError, GuestTimeout, Unsupported

if TYPE_CHECKING:
    from virtkit.agent.client import AgentClient
    from virtkit.config.machine import DiskSpec, MachineSpec, NicSpec


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


class Capability(enum.StrEnum):
    """An optional ability of a running machine."""

    SNAPSHOT = "snapshot"  # save and load guest memory and device state (with the disks, where they live)
    STATS = "stats"  # I/O and CPU counters: :meth:`Machine.stats`
    CONSOLE_INPUT = "console-input"  # type into the serial console: :meth:`Machine.console_write`
    DISK_HOTPLUG = "disk-hotplug"  # :meth:`Machine.add_disk` / :meth:`Machine.remove_disk`
    NIC_HOTPLUG = "nic-hotplug"  # :meth:`Machine.add_nic` / :meth:`Machine.remove_nic`
    MIGRATION = "migration"  # :meth:`Machine.migrate`


@dataclass(frozen=True)
class BlockStats:
    device: str
    rd_bytes: int | None = None
    wr_bytes: int | None = None
    rd_operations: int | None = None
    wr_operations: int | None = None
    flush_operations: int | None = None


@dataclass(frozen=True)
class NetStats:
    device: str
    rx_bytes: int | None = None
    tx_bytes: int | None = None
    rx_packets: int | None = None
    tx_packets: int | None = None
    rx_errs: int | None = None
    tx_errs: int | None = None
    source: str = "engine"


@dataclass(frozen=True)
class MachineStats:
    """What the engine counts for a machine; an engine leaves out what it cannot see."""

    block: tuple[BlockStats, ...] = ()
    net: tuple[NetStats, ...] = ()
    exits: dict[str, int] = field(default_factory=dict)  # VM exits by reason, where the engine counts them


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

    @property
    def console_socket(self) -> Path | None:
        """A unix socket streaming the serial console both ways (a terminal attaches here), if any."""

    # -- optional abilities: each raises Unsupported where capabilities() lacks it ----------------------

    def capabilities(self) -> frozenset[Capability]: ...

    def console_write(self, data: bytes) -> int:
        """Type ``data`` into the serial console; returns the bytes the console took."""

    def stats(self) -> MachineStats: ...

    def snapshot_save(self, tag: str) -> None:
        """Save guest memory and device state (and the disks, where the engine keeps them together) as
        ``tag``; the caller pauses the machine first."""

    def snapshot_load(self, tag: str) -> None: ...

    def snapshot_delete(self, tag: str) -> None: ...

    def add_disk(self, disk: DiskSpec) -> str:
        """Plug a disk in; returns its device id for :meth:`remove_disk`."""

    def remove_disk(self, device: str) -> None: ...

    def add_nic(self, nic: NicSpec) -> str:
        """Plug a NIC in; returns its device id for :meth:`remove_nic`."""

    def remove_nic(self, device: str) -> None: ...

    def migrate(self, destination: str) -> None:
        """Move the running machine to ``destination`` (an engine-specific URI)."""


class Engine(Protocol):
    name: str

    def availability(self) -> Availability: ...

    def start(self, spec: MachineSpec, workdir: Path, die_with_parent: bool = False) -> Machine:
        """Start ``spec`` with its run files in ``workdir``. ``die_with_parent`` ties the machine's
        lifetime to the calling process (a one-shot run) instead of letting it outlive it."""


class _Named(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def engine(self) -> str: ...


class MachineBase:
    """Refusals for every optional ability; an engine's machine overrides the ones it has and lists them
    in :meth:`capabilities`."""

    def capabilities(self) -> frozenset[Capability]:
        return frozenset()

    def _unsupported(self: _Named, what: str, hint: str) -> Unsupported:
        return Unsupported(f"the {self.engine} engine cannot {what} ({self.name})", hint=hint)

    @property
    def console_socket(self) -> Path | None:
        return None

    def console_write(self: _Named, data: bytes) -> int:
        raise MachineBase._unsupported(self, "type into the console", "use `virtkit exec` to run commands in the guest")

    def stats(self: _Named) -> MachineStats:
        raise MachineBase._unsupported(self, "report statistics", "read the guest's own counters with `virtkit exec`")

    def snapshot_save(self: _Named, tag: str) -> None:
        raise MachineBase._unsupported(self, "save guest memory", "take a disk-only snapshot (--disk-only)")

    def snapshot_load(self: _Named, tag: str) -> None:
        raise MachineBase._unsupported(self, "load saved guest memory", "revert to a disk-only snapshot")

    def snapshot_delete(self: _Named, tag: str) -> None:
        raise MachineBase._unsupported(self, "delete saved guest memory", "delete the snapshot while the machine is off")

    def add_disk(self: _Named, disk: DiskSpec) -> str:
        raise MachineBase._unsupported(self, "plug in disks while running", "add the disk to the spec and restart the machine")

    def remove_disk(self: _Named, device: str) -> None:
        raise MachineBase._unsupported(self, "unplug disks while running", "remove the disk from the spec and restart")

    def add_nic(self: _Named, nic: NicSpec) -> str:
        raise MachineBase._unsupported(self, "plug in NICs while running", "add the NIC to the spec and restart the machine")

    def remove_nic(self: _Named, device: str) -> None:
        raise MachineBase._unsupported(self, "unplug NICs while running", "remove the NIC from the spec and restart")

    def migrate(self: _Named, destination: str) -> None:
        raise MachineBase._unsupported(self, "migrate a running machine", "shut it down, copy its disks and start it there")


def wait_for_agent(
    name: str,
    agent: AgentClient,
    timeout: float,
    alive: Callable[[], bool],
    console: Callable[[], str],
) -> float:
    """Block until ``agent`` answers; returns seconds waited. Raises GuestTimeout with the console's last
    lines if it does not, or if the machine stops first (every engine's :meth:`Machine.wait_ready`)."""
    try:
        return agent.wait_ready(timeout, alive=alive)
    except AgentError as exc:
        tail = "\n".join(console().strip().splitlines()[-10:])
        stopped = not alive()
        raise GuestTimeout(
            f"{name} {'stopped' if stopped else 'did not become ready'}"
            f"{'' if stopped else f' within {timeout:g}s'} ({exc.message})",
            console_tail=tail,
            hint="read the console lines below; check the kernel, initrd and cmdline (console=ttyS0)",
        ) from exc
