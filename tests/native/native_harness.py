"""A machine running in a background thread with its console captured (for the kvm tests)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from virtkit.machine.config import Outcome
from virtkit.machine.runner import Runner


@dataclass
class Boot:
    """A machine running in a background thread with its console captured."""

    runner: Runner
    out: bytearray = field(default_factory=bytearray)
    thread: threading.Thread | None = None
    result: list[Outcome] = field(default_factory=list)

    def text(self) -> str:
        return self.out.decode("latin-1")

    def wait_for(self, needle: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} never appeared on the console:\n{self.text()}")
            if self.result:
                raise AssertionError(f"the machine ended ({self.result[0]}) before {needle!r}:\n{self.text()}")
            time.sleep(0.01)

    def wait(self, timeout: float = 20.0) -> Outcome:
        assert self.thread is not None
        self.thread.join(timeout)
        assert self.result, f"the machine did not end within {timeout} s:\n{self.text()}"
        return self.result[0]
