"""One VM's supervisor: ``python -m virtkit.daemon.vmproc VMDIR [--ready-fd N]``.

virtkitd starts one per VM in a new session, so neither a crashing guest or engine nor a daemon restart
touches anything else. It joins the VM's cgroup first (the engine then inherits the limits), starts the
engine's machine, answers the control socket (:mod:`virtkit.daemon.ctl`) and, when the machine ends,
writes ``state.json`` (shut off or crashed, and why) and exits. It outlives the daemon by design.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import importlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from virtkit import ipc
from virtkit.config.machine import MachineSpec
from virtkit.daemon.cgroups import VmCgroup
from virtkit.daemon.engines import start_machine
from virtkit.engines.base import Engine, Machine, VmState
from virtkit.errors import ConfigError, EngineError, VirtkitError
from virtkit.fsutil import write_atomic

CTL = "ctl.sock"
PIDFILE = "vmproc.pid"
STATEFILE = "state.json"
CONFIG = "vm.json"


def load_factory(ref: str) -> Any:
    mod, _, attr = ref.partition(":")
    return getattr(importlib.import_module(mod), attr)


class Supervisor:
    def __init__(self, vmdir: Path) -> None:
        self.vmdir = vmdir
        self.config: dict[str, Any] = json.loads((vmdir / CONFIG).read_text())
        self.name: str = self.config["name"]
        self.machine: Machine | None = None
        self.started_at = 0.0
        self.intent: str | None = None  # "shutdown"/"destroy" when the end was asked for
        self.lock = threading.Lock()  # serializes lifecycle actions
        self.agent_lock = threading.Lock()
        self.watchers: list[ipc.Request] = []  # open "watch" requests, each on its own connection
        self.watch_lock = threading.Lock()
        self.done = threading.Event()
        self.server: ipc.Server | None = None

    # -- events
    def emit(self, **event: Any) -> None:
        payload = {"time": time.time(), **event}
        with self.watch_lock:
            for w in list(self.watchers):
                try:
                    w.event(payload)
                except OSError:
                    self.watchers.remove(w)

    # -- control socket (virtkit.daemon.ctl is the client)
    def serve(self) -> None:
        self.server = ipc.Server(self.vmdir / CTL, self.handle)

    def handle(self, request: ipc.Request) -> Any:
        if request.op == "watch":
            # The reply is the current status; events follow on this connection until the VM ends. The
            # watch lock holds emit() back until the reply is on the wire, so no event comes before it.
            self.watch_lock.acquire()
            request.after_reply(self.watch_lock.release)
            if self.done.is_set():  # the VM ended meanwhile: say so and end the watch, as finish() would
                request.after_reply(request.peer.close)
            else:
                self.watchers.append(request)
            return self.status()
        return self.dispatch(request.op, request.args)

    def _m(self) -> Machine:
        if self.machine is None:
            raise EngineError(f"{self.name} is not running yet")
        return self.machine

    def status(self) -> dict[str, Any]:
        m = self.machine
        state = m.status() if m is not None else VmState.SHUTOFF
        return {
            "state": str(state),
            "engine": m.engine if m else None,
            "technique": str(m.technique) if m else None,
            "capabilities": sorted(m.capabilities()) if m else [],
            "engine_pid": m.pid if m else None,
            "supervisor_pid": os.getpid(),
            "started_at": self.started_at,
            "console_log": str(m.console_log) if m else None,
        }

    def dispatch(self, op: str, req: dict[str, Any]) -> Any:
        if op == "status":
            return self.status()
        m = self._m()
        match op:
            case "pause" | "resume" | "reboot":
                with self.lock, self.agent_lock:  # reboot goes through the agent when it answers
                    {"pause": m.pause, "resume": m.resume, "reboot": m.reboot}[op]()
                self.emit(event="state", state=str(m.status()), reason=op)
                return self.status()
            case "shutdown" | "destroy":
                with self.lock:
                    self.intent = op
                    if op == "shutdown":
                        m.shutdown(float(req.get("timeout", 30.0)))
                    else:
                        m.destroy()
                self.done.wait(10)
                return {"state": str(VmState.SHUTOFF)}
            case "exec":
                return self.exec(m, req)
            case "agent_ping":
                with self.agent_lock:
                    if req.get("wait"):
                        m.wait_ready(float(req.get("timeout", 60)))
                    else:
                        m.agent().ping()
                return True
            case "interfaces":
                with self.agent_lock:
                    return m.agent().network_interfaces()
            case "stats":
                return self.stats(m)
            case "console_write":
                m.console_write(base64.b64decode(req["data_b64"]))
                return True
            case "snapshot_save" | "snapshot_load" | "snapshot_delete":
                action = {"snapshot_save": m.snapshot_save, "snapshot_load": m.snapshot_load,
                          "snapshot_delete": m.snapshot_delete}[op]  # fmt: skip
                with self.lock:
                    action(str(req["name"]))
                return self.status()
        raise ConfigError(f"unknown supervisor op {op!r}")

    def exec(self, m: Machine, req: dict[str, Any]) -> dict[str, Any]:
        with self.agent_lock:
            agent = m.agent()
            stdin = base64.b64decode(req["stdin_b64"]) if req.get("stdin_b64") else None
            kw: dict[str, Any] = {}
            if req.get("timeout") is not None:
                kw["timeout"] = float(req["timeout"])
            if stdin is not None:
                kw["input"] = stdin
            r = agent.exec(list(req["argv"]), **kw)
        out, err = r.stdout, r.stderr
        return {
            "exitcode": r.exitcode,
            "stdout_b64": base64.b64encode(out if isinstance(out, bytes) else out.encode()).decode(),
            "stderr_b64": base64.b64encode(err if isinstance(err, bytes) else err.encode()).decode(),
        }

    def stats(self, m: Machine) -> dict[str, Any]:
        """The engine's counters; NIC counters from the guest agent where the engine has none."""
        out: dict[str, Any] = {"block": [], "net": [], "exits": {}}
        with contextlib.suppress(VirtkitError):  # an engine without stats, or one that cannot answer now
            counters = m.stats()
            out = {
                "block": [dataclasses.asdict(b) for b in counters.block],
                "net": [dataclasses.asdict(n) for n in counters.net],
                "exits": dict(counters.exits),
            }
        if not out["net"] and self.agent_lock.acquire(timeout=1.0):  # never queue behind a long exec
            try:
                ifaces = m.agent().network_interfaces(timeout=3.0)
            except Exception:
                ifaces = []
            finally:
                self.agent_lock.release()
            with contextlib.suppress(Exception):
                for it in ifaces:
                    st = it.get("statistics") or {}
                    if it.get("name") == "lo":
                        continue
                    out["net"].append(
                        {
                            "device": it.get("name"),
                            "rx_bytes": st.get("rx-bytes"),
                            "tx_bytes": st.get("tx-bytes"),
                            "rx_packets": st.get("rx-packets"),
                            "tx_packets": st.get("tx-packets"),
                            "rx_errs": st.get("rx-errs"),
                            "tx_errs": st.get("tx-errs"),
                            "source": "guest agent",
                        }
                    )
        return out

    # -- life
    def run(self, ready_fd: int | None) -> int:
        def report(msg: dict[str, Any]) -> None:
            if ready_fd is not None:
                with contextlib.suppress(OSError):
                    os.write(ready_fd, ipc.encode(msg))
                    os.close(ready_fd)

        try:
            if self.config.get("cgroup"):
                VmCgroup(self.name, parent=self.config.get("cgroup_parent")).join(os.getpid())
            write_atomic(self.vmdir / PIDFILE, str(os.getpid()))
            with contextlib.suppress(FileNotFoundError):
                (self.vmdir / STATEFILE).unlink()
            self.serve()
            spec = MachineSpec.from_json(self.config["machine"])
            factory = load_factory(self.config["engine_factory"])
            engine: Engine = factory(self.config.get("engine", spec.engine))
            workdir = self.vmdir / "run"
            workdir.mkdir(exist_ok=True)
            self.machine = start_machine(engine, spec, workdir)
            self.started_at = time.time()
        except BaseException as e:
            err = e if isinstance(e, VirtkitError) else EngineError(f"{type(e).__name__}: {e}")
            if not isinstance(e, VirtkitError):
                traceback.print_exc()
            self.finish(VmState.SHUTOFF, f"start failed: {err.message}")
            report(ipc.reply(None, error=err))
            return 1
        report(ipc.reply(None, self.status()))
        self.emit(event="state", state=str(VmState.RUNNING), reason="started")

        def on_term(signum: int, frame: Any) -> None:
            self.intent = "destroy"

            def destroy() -> None:
                with self.lock:
                    self._m().destroy()

            threading.Thread(target=destroy, daemon=True).start()

        signal.signal(signal.SIGTERM, on_term)
        final = self.wait_end(self.machine)
        if self.intent is not None:
            reason = self.intent
            final = VmState.SHUTOFF
        elif final == VmState.CRASHED:
            reason = "engine crashed"
            if self.config.get("cgroup") and VmCgroup(self.name, parent=self.config.get("cgroup_parent")).oom_killed():
                reason = "engine killed by the memory limit (cgroup OOM)"
        else:
            reason = "guest powered off"
        self.finish(final, reason)
        return 0

    def wait_end(self, m: Machine) -> VmState:
        """Wait for the machine to end, in short slices under the lifecycle lock: an engine need not
        expect wait() in one thread while another destroys the machine (QEMU's releases its QMP channel in
        both)."""
        while True:
            with self.lock:
                st = m.wait(0.1)
            if st in (VmState.SHUTOFF, VmState.CRASHED):
                return st
            time.sleep(0.02)

    def finish(self, state: VmState, reason: str) -> None:
        m = self.machine
        if m is not None:
            with contextlib.suppress(Exception):
                m.destroy()  # release the engine's resources even after a crash
        write_atomic(self.vmdir / STATEFILE, json.dumps({"state": str(state), "reason": reason, "time": time.time()}))
        self.emit(event="state", state=str(state), reason=reason, final=True)
        self.done.set()
        for p in (CTL, PIDFILE):
            with contextlib.suppress(FileNotFoundError):
                (self.vmdir / p).unlink()
        with self.watch_lock:
            for w in self.watchers:
                w.peer.close()
        if self.server is not None:
            self.server.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="virtkit-vmproc", description=__doc__)
    ap.add_argument("vmdir", type=Path)
    ap.add_argument("--ready-fd", type=int)
    a = ap.parse_args(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    return Supervisor(a.vmdir).run(a.ready_fd)


if __name__ == "__main__":
    sys.exit(main())
