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
import importlib
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from virtkit.config.machine import MachineSpec
from virtkit.daemon.cgroups import VmCgroup
from virtkit.daemon.engines import start_machine
from virtkit.engines.base import Engine, Machine, VmState
from virtkit.errors import ConfigError, EngineError, VirtkitError

CTL = "ctl.sock"
PIDFILE = "vmproc.pid"
STATEFILE = "state.json"
CONFIG = "vm.json"


def write_atomic(path: Path, data: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_factory(ref: str) -> Any:
    mod, _, attr = ref.partition(":")
    return getattr(importlib.import_module(mod), attr)


def _jsonable(v: Any) -> Any:
    if hasattr(v, "model_dump"):
        return v.model_dump(mode="json")
    if hasattr(v, "__dataclass_fields__"):
        return {k: _jsonable(getattr(v, k)) for k in v.__dataclass_fields__}
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


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
        self.watchers: list[socket.socket] = []
        self.watch_lock = threading.Lock()
        self.done = threading.Event()
        self.sock: socket.socket | None = None
        self.console_sock: socket.socket | None = None
        self.console_lock = threading.Lock()

    # -- events
    def emit(self, **event: Any) -> None:
        line = json.dumps({"time": time.time(), **event}).encode() + b"\n"
        with self.watch_lock:
            for w in list(self.watchers):
                try:
                    w.sendall(line)
                except OSError:
                    self.watchers.remove(w)

    # -- control socket
    def serve(self) -> None:
        path = self.vmdir / CTL
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(path))
        os.chmod(path, 0o600)
        s.listen(64)
        self.sock = s
        threading.Thread(target=self._accept, daemon=True, name="ctl-accept").start()

    def _accept(self) -> None:
        assert self.sock is not None
        while not self.done.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            with conn.makefile("rb") as f:
                line = f.readline(1 << 20)
            if not line:
                conn.close()
                return
            req = json.loads(line)
            op = req.pop("op", "")
            if op == "watch":
                with self.watch_lock:
                    self.watchers.append(conn)
                conn.sendall(json.dumps({"event": "hello", **self.status()}).encode() + b"\n")
                return  # kept open; closed when the VM ends
            try:
                result = self.dispatch(op, req)
                data = json.dumps({"ok": True, "result": _jsonable(result)})
            except VirtkitError as e:
                data = json.dumps({"ok": False, "error": e.message, "hint": e.hint, "kind": type(e).__name__})
            except Exception as e:  # report, never die: the VM must outlive a bad request
                traceback.print_exc()
                data = json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}", "kind": "EngineError"})
            conn.sendall(data.encode() + b"\n")
            conn.close()
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                conn.close()

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
            "engine_pid": m.pid if m else None,
            "supervisor_pid": os.getpid(),
            "started_at": self.started_at,
            "console_log": str(m.console_log) if m else None,
        }

    def dispatch(self, op: str, req: dict[str, Any]) -> Any:
        if op == "status":
            return self.status()
        m = self._m()
        if op in ("pause", "resume", "reboot"):
            with self.lock, self.agent_lock:  # reboot goes through the agent when it answers
                getattr(m, op)()
            st = m.status()
            self.emit(event="state", state=str(st), reason=op)
            return self.status()
        if op in ("shutdown", "destroy"):
            with self.lock:
                self.intent = op
                if op == "shutdown":
                    m.shutdown(float(req.get("timeout", 30.0)))
                else:
                    m.destroy()
            self.done.wait(10)
            return {"state": str(VmState.SHUTOFF)}
        if op == "exec":
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
        if op == "agent_ping":
            with self.agent_lock:
                agent = m.agent()
                wait = getattr(m, "wait_ready", None) or getattr(agent, "wait_ready", None)
                if wait is not None and req.get("wait"):
                    wait(float(req.get("timeout", 60)))
                else:
                    agent.ping()
            return True
        if op == "interfaces":
            with self.agent_lock:
                return m.agent().network_interfaces()
        if op == "stats":
            return self.stats(m)
        if op == "console_write":
            self.console_write(m, base64.b64decode(req["data_b64"]))
            return True
        if op in ("snapshot_save", "snapshot_load", "snapshot_delete"):
            fn = getattr(m, op, None)
            with self.lock:
                if fn is not None:
                    fn(str(req["name"]))
                else:
                    self.qmp_snapshot(m, op.replace("_", "-"), str(req["name"]))
            return self.status()
        raise ConfigError(f"unknown supervisor op {op!r}")

    def console_write(self, m: Machine, data: bytes) -> None:
        """Type into the serial console: the engine's own writer, or its console socket (QEMU's chardev),
        held open with a thread draining it (the output is already in the console log)."""
        writer = getattr(m, "console_write", None)
        if writer is not None:
            writer(data)
            return
        path = getattr(m, "console_socket", None)
        if path is None:
            raise EngineError(
                f"the {m.engine} engine has no console input", hint="use `virtkit exec` to run commands in the guest"
            )
        with self.console_lock:
            if self.console_sock is None:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(str(path))
                except OSError as e:
                    s.close()
                    raise EngineError(f"cannot open {m.name}'s console: {e}") from e
                self.console_sock = s

                def drain(sock: socket.socket) -> None:
                    with contextlib.suppress(OSError):
                        while sock.recv(65536):
                            pass

                threading.Thread(target=drain, args=(s,), daemon=True, name="console-drain").start()
            try:
                self.console_sock.sendall(data)
            except OSError as e:
                self.console_sock.close()
                self.console_sock = None
                raise EngineError(f"{m.name}'s console went away: {e}") from e

    def qmp_snapshot(self, m: Machine, command: str, tag: str) -> None:
        """Internal snapshots through QEMU (``snapshot-save``/``-load``/``-delete`` jobs, QEMU >= 6.0): guest
        memory and every writable disk, stored inside the domain's qcow2 disks."""
        qmp = getattr(m, "_qmp_exec", None)
        disks = self.config["machine"].get("disks", [])
        writable = [(i, d) for i, d in enumerate(disks) if not d.get("readonly")]
        nodes = [f"disk{i}" for i, d in writable if d.get("format") == "qcow2"]
        if qmp is None or not nodes or len(nodes) != len(writable):
            raise EngineError(
                f"the {m.engine} engine can save guest memory only into qcow2 disks, and {self.name} has "
                + ("none" if not nodes else "a writable raw disk"),
                hint="give the domain a qcow2 disk, or take a disk-only snapshot (--disk-only)",
            )
        job = f"vk-{command}-{time.monotonic_ns()}"
        args: dict[str, Any] = {"job-id": job, "tag": tag, "devices": nodes}
        if command != "snapshot-delete":
            args["vmstate"] = nodes[0]
        qmp(command, args)
        deadline = time.monotonic() + 600
        while True:
            jobs = {j["id"]: j for j in qmp("query-jobs")}
            j = jobs.get(job)
            if j is None or j.get("status") == "concluded":
                break
            if time.monotonic() > deadline:
                raise EngineError(f"QEMU's {command} of {tag!r} did not finish in 600s")
            time.sleep(0.05)
        with contextlib.suppress(Exception):
            qmp("job-dismiss", {"id": job})
        if j is not None and j.get("error"):
            raise EngineError(f"QEMU {command} {tag!r}: {j['error']}")

    def stats(self, m: Machine) -> dict[str, Any]:
        out: dict[str, Any] = {"block": [], "net": []}
        for attr, key in (("block_stats", "block"), ("net_stats", "net")):
            fn = getattr(m, attr, None)
            if fn is not None:
                with contextlib.suppress(Exception):
                    out[key] = fn()
        qmp = getattr(m, "_qmp_exec", None)
        if not out["block"] and qmp is not None:
            with contextlib.suppress(Exception):
                for b in qmp("query-blockstats"):
                    st = b.get("stats", {})
                    out["block"].append(
                        {
                            "device": b.get("qdev") or b.get("node-name") or b.get("device"),
                            **{
                                k: st.get(k)
                                for k in ("rd_bytes", "wr_bytes", "rd_operations", "wr_operations", "flush_operations")
                            },
                        }
                    )
        if not out["net"] and self.agent_lock.acquire(timeout=1.0):  # never queue behind a long exec
            try:
                agent = m.agent()
                call = getattr(agent, "call", None)
                ifaces = (
                    call("guest-network-get-interfaces", timeout=3.0)
                    if call is not None
                    else agent.network_interfaces()
                )
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
                    os.write(ready_fd, json.dumps(msg).encode() + b"\n")
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
            msg = {"ok": False, "error": err.message, "hint": err.hint, "kind": type(err).__name__}
            self.finish(VmState.SHUTOFF, f"start failed: {err.message}")
            report(msg)
            return 1
        report({"ok": True, "result": self.status()})
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
                with contextlib.suppress(OSError):
                    w.close()
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()


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
