"""How much work one turn of a device may do (chains, bytes, time), so that no guest queue holds a device
lock, a vCPU or the notifier thread for long: a turn ends when any of the three runs out, the device lets go
of its lock, and what is left waits for its next turn (``VirtioDevice.defer``)."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    chains: int = 256
    bytes: int = 1 << 20
    seconds: float = 0.005

    def start(self) -> Turn:
        return Turn(self)


class Turn:
    """One turn's remaining allowance. ``spend`` after each chain; stop when ``exhausted``."""

    def __init__(self, budget: Budget) -> None:
        self.chains = budget.chains
        self.bytes = budget.bytes
        self.deadline = time.monotonic() + budget.seconds

    def spend(self, nbytes: int) -> None:
        self.chains -= 1
        self.bytes -= nbytes

    @property
    def exhausted(self) -> bool:
        return self.chains <= 0 or self.bytes <= 0 or time.monotonic() >= self.deadline
