"""What the native VMM is asked to run: pure data.

:class:`VmmConfig` is the native engine's view of a resolved :class:`~virtkit.spec.machine.MachineConfig`
(:meth:`VmmConfig.from_machine`) plus the knobs only this VMM has. It crosses into the VMM process as JSON
(:mod:`virtkit.spec.codec`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from virtkit.config import defaults
from virtkit.errors import ConfigError
from virtkit.spec.machine import MachineConfig


@dataclass(frozen=True)
class VmmConfig:
    kernel: Path
    initrd: Path | None = None
    cmdline: str = "console=ttyS0"
    memory_mib: int = defaults.DEFAULT_MEMORY_MIB
    vcpus: int = defaults.DEFAULT_VCPUS
    # expose KVM's paravirtual CPUID leaves (kvm-clock, PV EOI, ...)
    paravirt: bool = True
    # what a guest reset (reboot, triple fault, i8042 0xFE) does: boot again, or end the VMM
    on_reset: Literal["restart", "exit"] = "restart"
    # ACPI tables (FADT + DSDT with \_S5_) so the guest can power off
    acpi: bool = True
    # virtio-pci devices
    virtio_rng: bool = True
    # a virtio-console (hvc0) whose port org.qemu.guest_agent.0 is bridged to this unix socket
    agent_socket: Path | None = None
    # queue notifications through ioeventfd (served off the vCPU thread) rather than MMIO exits
    ioeventfd: bool = True
    # MSIs through irqfd (an eventfd write) rather than the KVM_SIGNAL_MSI ioctl
    irqfd: bool = True

    @classmethod
    def from_machine(cls, machine: MachineConfig, agent_socket: Path | None = None) -> VmmConfig:
        """The native VMM's config for a resolved machine; ``agent_socket`` only when the machine has an agent."""
        boot = machine.boot
        if boot.kernel is None:
            raise ConfigError(
                f"machine {machine.name}: the native engine boots kernels directly and has no firmware to boot a disk",
                hint="give boot.kernel (and initrd), or use --engine qemu for disk boot",
            )
        return cls(
            kernel=boot.kernel,
            initrd=boot.initrd,
            cmdline=boot.cmdline,
            memory_mib=machine.memory_mib,
            vcpus=machine.vcpus,
            paravirt=machine.paravirt,
            agent_socket=agent_socket if machine.agent else None,
        )

    def to_json(self) -> dict[str, Any]:
        from virtkit.spec.codec import to_json

        data: dict[str, Any] = to_json(self)
        return data

    @classmethod
    def from_json(cls, data: Any) -> VmmConfig:
        from virtkit.spec.codec import from_json

        return from_json(cls, data, "vmm")


@dataclass(frozen=True)
class Outcome:
    """Why a machine stopped running."""

    kind: Literal["poweroff", "reset", "stopped", "crashed"]
    reason: str = ""
