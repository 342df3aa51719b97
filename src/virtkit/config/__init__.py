"""Pure data: what a machine is made of. No I/O here; policy lives in :mod:`virtkit.config.defaults`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from virtkit.config.machine import BootSpec, DiskSpec, EngineName, MachineSpec, NicSpec

__all__ = ["BootSpec", "DiskSpec", "EngineName", "MachineSpec", "NicSpec"]


def __getattr__(name: str) -> object:
    # The machine types need pydantic; `virtkit.config.defaults` alone (what the CLI reads) must not.
    if name in __all__:
        from virtkit.config import machine

        return getattr(machine, name)
    raise AttributeError(f"module 'virtkit.config' has no attribute {name!r}")
