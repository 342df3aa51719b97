"""How a device raises an interrupt without knowing the interrupt controller (rust-vmm vm-superio's Trigger)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Trigger(Protocol):
    def set_level(self, level: bool) -> None:
        """Drive the device's interrupt line high (asserted) or low."""


class IrqLine:
    """An ISA/IOAPIC line of the in-kernel irqchip; only changes of level reach the hypervisor."""

    def __init__(self, irq: int, set_irq_line: Callable[[int, bool], None]) -> None:
        self.irq = irq
        self._set = set_irq_line
        self.level = False

    def set_level(self, level: bool) -> None:
        if level != self.level:
            self.level = level
            self._set(self.irq, level)


class RecordingTrigger:
    """For tests: remembers every level it was driven to."""

    def __init__(self) -> None:
        self.levels: list[bool] = []

    @property
    def level(self) -> bool:
        return bool(self.levels and self.levels[-1])

    def set_level(self, level: bool) -> None:
        self.levels.append(level)
