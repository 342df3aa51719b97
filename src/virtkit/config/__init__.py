"""Pure data: what a machine is made of. No I/O here; policy lives in :mod:`virtkit.config.defaults`."""

from virtkit.config.machine import BootSpec, DiskSpec, EngineName, MachineSpec, NicSpec

__all__ = ["BootSpec", "DiskSpec", "EngineName", "MachineSpec", "NicSpec"]
