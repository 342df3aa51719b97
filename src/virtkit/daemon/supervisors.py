"""One supervisor process per running VM (:mod:`virtkit.daemon.vmproc`): started in the VM's cgroup, followed
by a watcher thread, re-attached after a daemon restart, and cleaned up after.

The watcher follows the supervisor's event stream and, at its end-of-file, reads the supervisor's
``state.json`` to learn whether the VM shut off or crashed. The same path re-attaches supervisors after a
daemon restart. What a state change means for the domain (the store, events, NICs) is the owner's business:
it hears of it through the two callbacks it passes in.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from virtkit.daemon import ctl
from virtkit.daemon.cgroups import CgroupLimits, VmCgroup
from virtkit.daemon.domain import DomainSpec, DomainState
from virtkit.daemon.procinfo import pid_alive
from virtkit.daemon.vmproc import CONFIG, CTL, PIDFILE, STATEFILE
from virtkit.errors import EngineError
from virtkit.fsutil import write_atomic
from virtkit.host.process import python_child_env
from virtkit.spec.machine import MachineConfig

DEFAULT_ENGINE_FACTORY = "virtkit.daemon.engines:make_engine"
START_TIMEOUT_S = 120.0


@dataclass
class Handle:
    """A live supervisor the daemon follows."""

    name: str
    vmdir: Path
    proc: subprocess.Popen[bytes] | None = None  # None when re-attached after a restart
    started_at: float = 0.0
    thread: threading.Thread | None = None
    stopped: threading.Event = field(default_factory=threading.Event)
    nics_attached: list[int] = field(default_factory=list)

    @property
    def ctl(self) -> Path:
        return self.vmdir / CTL


# A running VM reported a new state (name, state, reason).
OnReport = Callable[[str, DomainState, str], None]
# A supervisor ended (its handle, the VM's final state, why); called before the handle is forgotten.
OnEnd = Callable[[Handle, DomainState, str], None]


class Supervisors:
    def __init__(
        self,
        vms_dir: Path,
        engine_factory: str,
        cgroup_version: int | None,
        cgroup_parent: str,
        on_report: OnReport,
        on_end: OnEnd,
    ) -> None:
        self.vms_dir = vms_dir
        vms_dir.mkdir(exist_ok=True)
        self.engine_factory = engine_factory
        self.cgroup_version = cgroup_version
        self.cgroup_parent = cgroup_parent
        self._on_report = on_report
        self._on_end = on_end
        self.handles: dict[str, Handle] = {}

    def vmdir(self, name: str) -> Path:
        return self.vms_dir / name

    def get(self, name: str) -> Handle | None:
        return self.handles.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.handles

    def __len__(self) -> int:
        return len(self.handles)

    def cgroup(self, name: str) -> VmCgroup | None:
        """The VM's cgroup, or None when this daemon puts VMs in none."""
        return VmCgroup(name, self.cgroup_version, self.cgroup_parent) if self.cgroup_version else None

    # -- starting
    def prepare(self, name: str) -> Handle:
        """A handle for a supervisor about to start, its run directory cleared of the last one's files."""
        d = self.vmdir(name)
        d.mkdir(parents=True, exist_ok=True)
        for f in (STATEFILE, PIDFILE, CTL):
            with contextlib.suppress(FileNotFoundError):
                (d / f).unlink()
        return Handle(name, d)

    def launch(self, h: Handle, spec: DomainSpec, machine: MachineConfig) -> None:
        """Start h's supervisor in the VM's cgroup and wait until its engine runs, then track the handle
        (call :meth:`follow` next); on failure raise the supervisor's own error and leave no cgroup behind."""
        name, d = h.name, h.vmdir
        cg = self.cgroup(name)
        if cg is not None:
            cg.create(CgroupLimits(cpus=spec.cpu_limit(), memory_bytes=spec.memory_limit_mib() * 1024 * 1024))
        config = {
            "name": name,
            "machine": machine.to_json(),
            "engine": spec.engine,
            "engine_factory": self.engine_factory,
            "cgroup": cg is not None,
            "cgroup_parent": self.cgroup_parent,
        }
        write_atomic(d / CONFIG, json.dumps(config))
        rfd, wfd = os.pipe()
        log = open(d / "vmproc.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "virtkit.daemon.vmproc", str(d), "--ready-fd", str(wfd)],
                pass_fds=(wfd,),
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=d,
                env=python_child_env(),
            )
        finally:
            os.close(wfd)
            log.close()
        try:
            msg = _read_ready(rfd, proc)
        finally:
            os.close(rfd)
        if not msg.get("ok"):
            proc.wait()
            if cg is not None:
                cg.remove()
            if msg.get("error"):
                ctl.raise_remote(msg)
            raise EngineError(f"the supervisor of {name} failed to start", hint=f"see {d / 'vmproc.log'}")
        h.proc = proc
        h.started_at = time.time()
        self.handles[name] = h

    # -- following
    def follow(self, h: Handle) -> None:
        """Watch h's supervisor on a thread: its state reports, then its end."""

        def run() -> None:
            for ev in ctl.watch(h.ctl):
                if ev.get("event") == "state" and not ev.get("final"):
                    self._on_report(h.name, DomainState(ev["state"]), str(ev.get("reason", "")))
            self._ended(h)

        h.thread = threading.Thread(target=run, daemon=True, name=f"watch-{h.name}")
        h.thread.start()

    def reattach(self, name: str) -> dict[str, Any] | None:
        """Follow the supervisor an earlier daemon left running for ``name``; its status, or None if none runs."""
        d = self.vmdir(name)
        pid = _read_pid(d)
        if pid is None or not pid_alive(pid):
            return None
        try:
            st: dict[str, Any] = ctl.call(d / CTL, "status", timeout=10)
        except EngineError:
            return None
        h = Handle(name, d, started_at=float(st.get("started_at") or time.time()))
        self.handles[name] = h
        self.follow(h)
        return st

    def forget(self, h: Handle) -> None:
        if self.handles.get(h.name) is h:
            del self.handles[h.name]

    def _ended(self, h: Handle) -> None:
        if h.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                h.proc.wait(10)
        else:
            pid = _read_pid(h.vmdir)
            for _ in range(100):
                if pid is None or not pid_alive(pid):
                    break
                time.sleep(0.05)
        final, reason = self.settle(h.name)
        self._on_end(h, final, reason)
        self.forget(h)
        h.stopped.set()

    # -- after the end
    def settle(self, name: str) -> tuple[DomainState, str]:
        """The final state a dead supervisor recorded (crashed if it recorded none), after killing whatever
        it left in the VM's cgroup."""
        final, reason = self.final_state(name)
        self.cleanup_leftovers(name)
        return final, reason

    def final_state(self, name: str) -> tuple[DomainState, str]:
        try:
            st = json.loads((self.vmdir(name) / STATEFILE).read_text())
            return DomainState(st["state"]), str(st.get("reason", ""))
        except (OSError, ValueError, KeyError):
            return DomainState.CRASHED, "supervisor died"

    def cleanup_leftovers(self, name: str) -> None:
        """Kill whatever is left in the VM's cgroup (an engine orphaned by a dead supervisor)."""
        cg = self.cgroup(name)
        if cg is None:
            return
        for _ in range(50):
            pids = cg.pids()
            if not pids:
                break
            for p in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
            time.sleep(0.05)
        cg.remove()


def _read_pid(vmdir: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int((vmdir / PIDFILE).read_text())
    return None


def _read_ready(rfd: int, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    buf = b""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        r, _, _ = select.select([rfd], [], [], 1.0)
        if r:
            chunk = os.read(rfd, 65536)
            if not chunk:
                break
            buf += chunk
            if buf.endswith(b"\n"):
                break
    if not buf:
        if proc.poll() is None:
            proc.kill()
        return {"ok": False}
    parsed: dict[str, Any] = json.loads(buf)
    return parsed
