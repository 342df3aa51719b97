"""The resolved machine config: what every engine consumes. Frozen dataclasses, pure data.

Made by :func:`virtkit.spec.resolve.resolve` from a user's :class:`~virtkit.spec.domain.DomainSpec`: paths
are absolute and exist, disk formats are known, NICs are plugged in and have their MACs, and the kernel
command line is the one the guest gets. Engines read it and add nothing of their own. The checks below keep
a hand-built config (tests, benchmarks) from being wrong in ways an engine would only find late.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from virtkit.config import defaults
from virtkit.errors import ConfigError

EngineName = Literal["auto", "native", "qemu"]
DiskFormat = Literal["raw", "qcow2"]
NicKind = Literal["user", "tap", "macvtap"]
Forward = tuple[Literal["tcp", "udp"], int, int]

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
MAC_RE = re.compile(r"([0-9a-f]{2}:){5}[0-9a-f]{2}")
MAX_VCPUS = 64
MIN_MEMORY_MIB, MAX_MEMORY_MIB = 32, 1024 * 1024


class InvalidMachine(ConfigError, ValueError):
    """A machine config that breaks one of its rules (a ValueError too, so pydantic reports it per field)."""


def check_name(value: str, what: str = "machine") -> str:
    """A VM name: it names run directories, cgroups and TAPs, so only a safe charset (whole string)."""
    if not NAME_RE.fullmatch(value):
        raise InvalidMachine(
            f"{value!r} is not a valid {what} name: use 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def check_mac(value: str) -> str:
    """A unicast MAC address in lower case."""
    mac = value.lower()
    if not MAC_RE.fullmatch(mac):
        raise InvalidMachine(f"{value!r} is not a MAC address like 52:54:00:12:34:56")
    if int(mac[:2], 16) & 1:
        raise InvalidMachine(f"{value!r} is a multicast MAC; use a unicast one such as 52:54:00:...")
    return mac


@dataclass(frozen=True)
class BootConfig:
    """Direct kernel boot (a kernel, an optional initrd and the guest's whole command line), or firmware boot
    from a disk."""

    kernel: Path | None = None
    initrd: Path | None = None
    cmdline: str = defaults.DEFAULT_CMDLINE
    disk: Path | None = None
    disk_format: DiskFormat = "raw"

    def __post_init__(self) -> None:
        if (self.kernel is None) == (self.disk is None):
            raise InvalidMachine("boot from a kernel or from a disk: give exactly one of kernel and disk")
        if self.disk is not None and self.initrd is not None:
            raise InvalidMachine("initrd only goes with kernel")


@dataclass(frozen=True)
class DiskConfig:
    path: Path
    format: DiskFormat = "raw"
    readonly: bool = False


@dataclass(frozen=True)
class NicConfig:
    """One network interface.

    ``user``: QEMU's unprivileged user-mode network. ``tap``: an existing TAP device (the network layer
    creates it and plugs it into a bridge). ``macvtap``: an existing macvtap device opened by its tapN node.
    """

    kind: NicKind = "user"
    mac: str | None = None
    ifname: str | None = None
    # macvtap only: the character device to open (inside a network namespace there is no udev to make
    # /dev/tapN, so the network layer makes its own node)
    device: Path | None = None
    # user-mode only: host-port forwards as (proto, host_port, guest_port)
    forwards: tuple[Forward, ...] = ()

    def __post_init__(self) -> None:
        if self.mac is not None:
            object.__setattr__(self, "mac", check_mac(self.mac))
        if self.kind in ("tap", "macvtap") and not self.ifname:
            raise InvalidMachine(f"a {self.kind} NIC needs ifname")


@dataclass(frozen=True)
class MachineConfig:
    name: str
    boot: BootConfig
    engine: EngineName = "auto"
    vcpus: int = defaults.DEFAULT_VCPUS
    memory_mib: int = defaults.DEFAULT_MEMORY_MIB
    disks: tuple[DiskConfig, ...] = ()
    nics: tuple[NicConfig, ...] = ()
    # Expose KVM's paravirtual CPUID leaves (kvm-clock, PV EOI, ...) when the accelerator is KVM.
    paravirt: bool = True
    # Add the virtio-serial port the guest agent listens on.
    agent: bool = True

    def __post_init__(self) -> None:
        check_name(self.name)
        if not 1 <= self.vcpus <= MAX_VCPUS:
            raise InvalidMachine(f"vcpus is {self.vcpus}; a machine has 1 to {MAX_VCPUS}")
        if not MIN_MEMORY_MIB <= self.memory_mib <= MAX_MEMORY_MIB:
            raise InvalidMachine(f"memory is {self.memory_mib} MiB; a machine has {MIN_MEMORY_MIB} MiB to 1 TiB")
        object.__setattr__(self, "disks", tuple(self.disks))
        object.__setattr__(self, "nics", tuple(self.nics))

    def to_json(self) -> dict[str, Any]:
        from virtkit.spec.codec import to_json

        data: dict[str, Any] = to_json(self)
        return data

    @classmethod
    def from_json(cls, data: Any) -> MachineConfig:
        from virtkit.spec.codec import from_json

        return from_json(cls, data, "machine")
