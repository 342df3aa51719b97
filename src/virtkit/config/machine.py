"""Former home of the machine spec; the resolved machine config now lives in :mod:`virtkit.spec.machine`.

These names stay importable for modules not yet moved to the new ones (``MachineSpec`` is
:class:`~virtkit.spec.machine.MachineConfig`, and so on); new code imports from :mod:`virtkit.spec`.
"""

from virtkit.spec.machine import BootConfig as BootSpec
from virtkit.spec.machine import DiskConfig as DiskSpec
from virtkit.spec.machine import EngineName, check_name
from virtkit.spec.machine import MachineConfig as MachineSpec
from virtkit.spec.machine import NicConfig as NicSpec

__all__ = ["BootSpec", "DiskSpec", "EngineName", "MachineSpec", "NicSpec", "check_name"]
