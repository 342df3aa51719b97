"""What the native VMM is asked to run: pure data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class VmmConfig:
    kernel: Path
    initrd: Path | None = None
    cmdline: str = "console=ttyS0"
    memory_mib: int = 256
    vcpus: int = 1
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


@dataclass(frozen=True)
class Outcome:
    """Why a machine stopped running."""

    kind: Literal["poweroff", "reset", "stopped", "crashed"]
    reason: str = ""
