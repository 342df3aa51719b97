"""Runs a real virtkitd (a subprocess on a unix socket in a temp dir) for tests and benchmarks, and cleans up
after it: every VM supervisor it started, their engines, their cgroups.

``fake=True`` runs it through tests/support/fake_daemon.py: everything real but the guest (unit tests).
The daemon always runs with --no-networks: it lives in the host's namespace, so it must not start the
autostart "default" network (a bridge and nftables NAT on the host).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from virtkit.client import Client

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
# the checkout's sources, and its root for tests.support (the fake engine, imported by the supervisors)
PYTHONPATH = os.pathsep.join([str(SRC), str(REPO)])


class Daemon:
    def __init__(self, home: Path, env: dict[str, str] | None = None, tcp: str | None = None,
                 images: Path | None = None, fake: bool = False) -> None:
        self.home = home
        self.fake = fake
        if images is not None and not (home / "images").exists():
            (home / "images").symlink_to(images)  # share the built default image instead of rebuilding it
        self.socket = home / "virtkitd.sock"
        self.tcp = tcp
        self.cgroup_parent = f"virtkit-test-{uuid.uuid4().hex[:8]}"
        self.env = {**os.environ, "VIRTKIT_HOME": str(home), "VIRTKIT_CGROUP_PARENT": self.cgroup_parent,
                    "PYTHONPATH": PYTHONPATH, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> None:
        entry = "tests.support.fake_daemon" if self.fake else "virtkit.daemon"
        args = [sys.executable, "-m", entry, "--home", str(self.home), "--log-level", "warning", "--no-networks"]
        if self.tcp:
            args += ["--tcp", self.tcp, "--token-file", str(self.home / "token")]
        log = open(self.home / "virtkitd.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([*args, *extra], env=self.env, stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        c = Client(socket=self.socket)
        deadline = time.monotonic() + 30
        while not c.ping():
            if self.proc.poll() is not None:
                raise RuntimeError("virtkitd exited: " + (self.home / "virtkitd.log").read_text()[-2000:])
            if time.monotonic() > deadline:
                raise RuntimeError("virtkitd did not come up")
            time.sleep(0.05)
        c.close()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def client(self) -> Client:
        return Client(socket=self.socket)

    def supervisor_pids(self) -> list[int]:
        out = []
        for pf in (self.home / "vms").glob("*/vmproc.pid"):
            with contextlib.suppress(OSError, ValueError):
                out.append(int(pf.read_text()))
        return out

    def logs(self) -> str:
        """The daemon's log and every VM's supervisor/engine logs and console tail (printed on teardown, so
        pytest shows them when a test fails)."""
        out = []
        for f in [self.home / "virtkitd.log", *sorted((self.home / "vms").glob("*/vmproc.log")),
                  *sorted((self.home / "vms").glob("*/run/qemu.stderr")),
                  *sorted((self.home / "vms").glob("*/state.json")),
                  *sorted((self.home / "vms").glob("*/run/console.log"))]:
            with contextlib.suppress(OSError):
                out.append(f"== {f}\n{f.read_text(errors='replace')[-3000:]}")
        return "\n".join(out)

    def cleanup(self) -> None:
        """Destroy every VM through the API if the daemon answers, then kill what is left, by pid."""
        with contextlib.suppress(Exception), self.client() as c:
            for d in c.list():
                with contextlib.suppress(Exception):
                    c.destroy(d.name)
        self.kill()
        from virtkit.daemon.cgroups import VmCgroup

        for vm in (self.home / "vms").glob("*") if (self.home / "vms").exists() else []:
            cg = VmCgroup(vm.name, parent=self.cgroup_parent)
            for _ in range(3):
                for pid in cg.pids():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.1)
            cg.remove()
            cg.remove_parent()
        for pid in self.supervisor_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # the per-test cgroup parent under every hierarchy (empty by now: its VMs are gone)
        from virtkit.daemon import cgroups

        for parent in [*cgroups.CGROUP_ROOT.glob(f"*/{self.cgroup_parent}"), cgroups.CGROUP_ROOT / self.cgroup_parent]:
            if not parent.is_dir():
                continue
            for child in parent.iterdir():
                if child.is_dir():
                    with contextlib.suppress(OSError):
                        child.rmdir()
            with contextlib.suppress(OSError):
                parent.rmdir()


@contextlib.contextmanager
def running_daemon(home: Path, env: dict[str, str] | None = None, tcp: str | None = None,
                   images: Path | None = None, fake: bool = False) -> Iterator[Daemon]:
    d = Daemon(home, env, tcp, images, fake)
    try:
        d.start()
        yield d
    finally:
        print(d.logs())
        d.cleanup()
