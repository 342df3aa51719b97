"""The one place a user's spec becomes a machine config: :func:`resolve`.

``virtkit run`` (its flags make a :class:`~virtkit.spec.domain.DomainSpec`), the daemon (a stored definition)
and through them every engine go through it. It looks the image up, checks boot and disk paths, reads the boot
disk's format, plugs NICs into their networks, fills in stable MACs and writes the guest's kernel command line;
engines then take the :class:`~virtkit.spec.machine.MachineConfig` as it is. The two things that reach
outside (building an image, plugging a NIC into a network) are passed in, so tests inject fakes as arguments.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from virtkit.config import defaults
from virtkit.errors import ConfigError, ImageError
from virtkit.spec.machine import BootConfig, DiskConfig, MachineConfig, NicConfig

if TYPE_CHECKING:
    from virtkit.spec.domain import DiskSpec, DomainSpec, NetSpec

HOSTNAME_ARG = "virtkit.hostname="


@dataclass(frozen=True)
class BootImage:
    """What an image name resolves to: a kernel, its initrd and the command line to boot them with."""

    kernel: Path
    initrd: Path | None = None
    cmdline: str = defaults.DEFAULT_CMDLINE


# image name -> its kernel and initrd (building the image when it is not cached yet)
ImageResolver = Callable[[str], BootImage]
# (NIC index, its spec) -> the plugged-in NIC; called only for NICs on a named network
NicAttacher = Callable[[int, "NetSpec"], NicConfig]


def build_boot_image(name: str) -> BootImage:
    """The default :data:`ImageResolver`: build (or reuse from the cache) a virtkit image."""
    try:
        from virtkit.images import build_image
    except ImportError as e:  # pragma: no cover - a build without the image builder
        raise ImageError("this virtkit build has no image builder", hint="use a boot section") from e
    img = build_image(name)
    return BootImage(kernel=img.kernel, initrd=img.initrd)


def guest_cmdline(name: str, cmdline: str) -> str:
    """The guest's command line: the machine's name becomes its hostname (the default image reads it), unless
    the command line already names one."""
    if HOSTNAME_ARG in cmdline:
        return cmdline
    return f"{cmdline} {HOSTNAME_ARG}{name}"


def resolve(
    spec: DomainSpec,
    *,
    images: ImageResolver = build_boot_image,
    networks: NicAttacher | None = None,
) -> MachineConfig:
    """Turn ``spec`` into the config an engine runs. ConfigError names the field and the fix.

    ``networks`` plugs NICs that name a network (``nics = ["default"]``) into it; without one such NICs are
    refused. NICs already plugged in stay so when a later NIC fails: the caller undoes what it attached.
    """
    return MachineConfig(
        name=spec.name,
        engine=spec.engine,
        vcpus=spec.vcpus,
        memory_mib=spec.memory,
        boot=_boot(spec, images),
        disks=tuple(_disk(spec.name, i, d) for i, d in enumerate(spec.disks)),
        nics=tuple(_nic(spec.name, i, n, networks) for i, n in enumerate(spec.nics)),
        paravirt=spec.paravirt,
        agent=spec.agent,
    )


def _boot(spec: DomainSpec, images: ImageResolver) -> BootConfig:
    if spec.image is not None:
        img = images(spec.image)
        return BootConfig(kernel=img.kernel, initrd=img.initrd, cmdline=guest_cmdline(spec.name, img.cmdline))
    assert spec.boot is not None  # DomainSpec asks for exactly one of image and boot
    boot = spec.boot
    for field, path in (("kernel", boot.kernel), ("initrd", boot.initrd), ("disk", boot.disk)):
        if path is not None and not path.is_file():
            raise ConfigError(
                f"{spec.name}: boot.{field} {path} does not exist",
                hint=f"fix the path (boot.{field} in a domain spec, --{field} for virtkit run)",
            )
    if boot.disk is not None:
        from virtkit.storage.disks import inspect_disk

        fmt = inspect_disk(boot.disk).format
        return BootConfig(disk=boot.disk.resolve(), disk_format="qcow2" if fmt == "qcow2" else "raw")
    assert boot.kernel is not None
    return BootConfig(
        kernel=boot.kernel.resolve(),
        initrd=boot.initrd.resolve() if boot.initrd is not None else None,
        cmdline=guest_cmdline(spec.name, boot.cmdline or defaults.DEFAULT_CMDLINE),
    )


def _disk(vm: str, i: int, disk: DiskSpec) -> DiskConfig:
    if not disk.path.exists():
        raise ConfigError(
            f"{vm}: disks.{i}.path {disk.path} does not exist", hint="create it (qemu-img create) or fix the path"
        )
    return DiskConfig(path=disk.path.resolve(), format=disk.format, readonly=disk.readonly)


def _nic(vm: str, i: int, nic: NetSpec, networks: NicAttacher | None) -> NicConfig:
    if nic.kind is not None:
        return NicConfig(
            kind=nic.kind, mac=nic.mac or defaults.stable_mac(vm, i), ifname=nic.ifname, forwards=nic.forwards
        )
    if networks is None:
        raise ConfigError(
            f"{vm}: nics.{i} asks for network {nic.network!r} but this virtkit has no network layer",
            hint="use nics = ['user']",
        )
    plugged = networks(i, nic)
    mac = nic.mac or plugged.mac or defaults.stable_mac(vm, i)
    return plugged if plugged.mac == mac else dataclasses.replace(plugged, mac=mac)
