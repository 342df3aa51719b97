"""A process-backed fake engine for the daemon's unit tests (httpx's MockTransport habit).

Its "engine process" is a real ``sleep`` so that supervision, cgroups, kill -9 and re-attach are exercised
for real; only the guest is missing. The agent answers ``exec`` by echoing the argv.
Tests hand it to the daemon by name (tests/support/fake_daemon.py); the shipped daemon cannot select it.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from virtkit.config.machine import MachineSpec
from virtkit.engines.base import Availability, BlockStats, Capability, MachineBase, MachineStats, Technique, VmState


@dataclass(frozen=True)
class FakeExecResult:
    exitcode: int
    stdout: bytes
    stderr: bytes


class FakeAgent:
    def ping(self) -> None:
        pass

    def exec(self, argv: list[str], *, input: bytes | None = None, timeout: float | None = None) -> FakeExecResult:
        if argv[:1] == ["false"]:
            return FakeExecResult(1, b"", b"")
        return FakeExecResult(0, (" ".join(argv) + "\n").encode(), b"")

    def network_interfaces(self, timeout: float | None = None) -> list[dict[str, Any]]:
        return [
            {
                "name": "eth0",
                "hardware-address": "52:54:00:00:00:01",
                "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "192.0.2.10", "prefix": 24}],
            }
        ]


class FakeMachine(MachineBase):
    engine = "fake"
    technique = Technique.BINARY_TRANSLATION

    def __init__(self, spec: MachineSpec, workdir: Path) -> None:
        self.name = spec.name
        self.console_log = workdir / "console.log"
        self.console_log.write_text(f"fake console of {spec.name}\nlogin: ")
        self._proc = subprocess.Popen(["sleep", "1000000"], stdin=subprocess.DEVNULL)
        self._paused = False
        self._stopping = False
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def status(self) -> VmState:
        rc = self._proc.poll()
        if rc is None:
            return VmState.PAUSED if self._paused else VmState.RUNNING
        return VmState.SHUTOFF if self._stopping or rc == 0 else VmState.CRASHED

    def pause(self) -> None:
        self._proc.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        self._proc.send_signal(signal.SIGCONT)
        self._paused = False

    def reboot(self) -> None:
        with self.console_log.open("a") as f:
            f.write("\nrebooting\n")

    def shutdown(self, timeout: float = 30.0) -> None:
        self.destroy()

    def destroy(self) -> None:
        self._stopping = True
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()
        self._proc.wait()

    def wait(self, timeout: float | None = None) -> VmState:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout)
        return self.status()

    def agent(self) -> FakeAgent:
        return FakeAgent()

    def wait_ready(self, timeout: float = 60) -> float:
        return 0.0

    def detach(self) -> None:
        pass

    def console(self) -> str:
        return self.console_log.read_text()

    def capabilities(self) -> frozenset[Capability]:
        return frozenset({Capability.CONSOLE_INPUT, Capability.STATS, Capability.SNAPSHOT})

    def console_write(self, data: bytes) -> int:
        with self.console_log.open("ab") as f:
            f.write(data)
        return len(data)

    def stats(self) -> MachineStats:
        return MachineStats(block=(BlockStats("vda", rd_bytes=0, wr_bytes=0, rd_operations=0, wr_operations=0),))

    # saved "memory" lives in the run directory, as QEMU's lives in the qcow2 disks: it outlives a restart
    def _snapfile(self) -> Path:
        return self.console_log.parent / "snapshots.txt"

    def _saved(self) -> set[str]:
        with contextlib.suppress(OSError):
            return set(self._snapfile().read_text().split())
        return set()

    def snapshot_save(self, name: str) -> None:
        self._snapfile().write_text("\n".join(sorted(self._saved() | {name})))

    def snapshot_load(self, name: str) -> None:
        from virtkit.errors import EngineError

        if name not in self._saved():
            raise EngineError(f"no saved memory {name!r} in this machine")

    def snapshot_delete(self, name: str) -> None:
        self._snapfile().write_text("\n".join(sorted(self._saved() - {name})))


class FakeEngine:
    name = "fake"

    def __init__(self, requested: str = "auto") -> None:
        self.requested = requested

    def availability(self) -> Availability:
        return Availability(True, Technique.BINARY_TRANSLATION, "fake engine for tests")

    def start(self, spec: MachineSpec, workdir: Path, die_with_parent: bool = False) -> FakeMachine:
        # The stand-in process is not tied to its parent: tests rely on the cgroup to reap it.
        return FakeMachine(spec, workdir)


@dataclass(frozen=True)
class FakeImage:
    kernel: Path
    initrd: Path | None


def fake_image(name: str) -> FakeImage:
    """Stands in for :func:`virtkit.images.build_image` in unit tests: empty files, no build."""
    from virtkit.config import defaults
    from virtkit.errors import ImageError

    if name != "tiny":
        raise ImageError(f"unknown image {name!r}", hint="the default image is 'tiny'")
    d = defaults.image_dir() / "fake"
    d.mkdir(parents=True, exist_ok=True)
    (d / "vmlinuz").touch()
    (d / "initrd").touch()
    return FakeImage(d / "vmlinuz", d / "initrd")
