"""The machine spec: frozen pydantic models, validated with field paths in errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from virtkit.config import defaults

EngineName = Literal["auto", "native", "qemu"]
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def check_name(value: str, what: str = "machine") -> str:
    """A VM name: it names run directories, cgroups and TAPs, so only a safe charset (whole string)."""
    if not NAME_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid {what} name: use 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


MAC_RE = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BootSpec(_Frozen):
    """Direct kernel boot (a kernel, an optional initrd and a command line), or firmware boot from a disk."""

    kernel: Path | None = None
    initrd: Path | None = None
    cmdline: str = defaults.DEFAULT_CMDLINE
    disk: Path | None = None
    disk_format: Literal["raw", "qcow2"] = "raw"

    @model_validator(mode="after")
    def _one_way(self) -> BootSpec:
        if (self.kernel is None) == (self.disk is None):
            raise ValueError("boot from a kernel or from a disk: give exactly one of kernel and disk")
        if self.disk is not None and self.initrd is not None:
            raise ValueError("initrd only goes with kernel")
        return self


class DiskSpec(_Frozen):
    path: Path
    format: Literal["raw", "qcow2"] = "raw"
    readonly: bool = False


class NicSpec(_Frozen):
    """One network interface.

    ``user``: QEMU's unprivileged user-mode network. ``tap``: an existing TAP device (the network layer
    creates it and plugs it into a bridge). ``macvtap``: an existing macvtap device opened by its tapN node.
    """

    kind: Literal["user", "tap", "macvtap"] = "user"
    mac: str | None = None
    ifname: str | None = None
    # macvtap only: the character device to open (inside a network namespace there is no udev to make
    # /dev/tapN, so the network layer makes its own node)
    device: Path | None = None
    # user-mode only: host-port forwards as (proto, host_port, guest_port)
    forwards: tuple[tuple[Literal["tcp", "udp"], int, int], ...] = ()

    @field_validator("mac")
    @classmethod
    def _mac(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.lower()
        if not MAC_RE.match(v):
            raise ValueError(f"{v!r} is not a MAC address like 52:54:00:12:34:56")
        if int(v[:2], 16) & 1:
            raise ValueError(f"{v!r} is a multicast MAC; use a unicast one such as 52:54:00:...")
        return v

    @model_validator(mode="after")
    def _ifname(self) -> NicSpec:
        if self.kind in ("tap", "macvtap") and not self.ifname:
            raise ValueError(f"a {self.kind} NIC needs ifname")
        return self


class MachineSpec(_Frozen):
    name: str
    engine: EngineName = "auto"
    vcpus: int = Field(default=defaults.DEFAULT_VCPUS, ge=1, le=64)
    memory_mib: int = Field(default=defaults.DEFAULT_MEMORY_MIB, ge=32, le=1024 * 1024)
    boot: BootSpec
    disks: tuple[DiskSpec, ...] = ()
    nics: tuple[NicSpec, ...] = ()
    # Expose KVM's paravirtual CPUID leaves (kvm-clock, PV EOI, ...) when the accelerator is KVM.
    paravirt: bool = True
    # Add the virtio-serial port the guest agent listens on.
    agent: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)
