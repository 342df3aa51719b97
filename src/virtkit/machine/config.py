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


@dataclass(frozen=True)
class Outcome:
    """Why a machine stopped running."""

    kind: Literal["poweroff", "reset", "stopped", "crashed"]
    reason: str = ""
