"""The daemon's logic: domains in the store, one supervisor process per running VM, events.

Actions on one domain are serialized by that domain's lock (Firecracker's habit: the API queues actions, it
never pokes VM state directly). Running VMs are tracked by a watcher thread per supervisor: it follows the
supervisor's event stream and, at its end-of-file, reads the supervisor's ``state.json`` to learn whether the
VM shut off or crashed. The same path re-attaches supervisors after a daemon restart.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from virtkit import __version__
from virtkit.config import defaults
from virtkit.daemon import cgroups, ctl
from virtkit.daemon.cgroups import CgroupLimits, VmCgroup
from virtkit.daemon.domain import Action, DiskSpec, DomainSpec, DomainState, NetSpec, check_transition
from virtkit.daemon.events import EventBus
from virtkit.daemon.models import (
    DomainInfo,
    DomainStats,
    DomainSummary,
    ExecResult,
    HostInfo,
    Interface,
    SnapshotInfo,
)
from virtkit.daemon.store import Conflict, DomainRow, NotFound, SnapshotRow, Store
from virtkit.daemon.vmproc import CONFIG, CTL, PIDFILE, STATEFILE, write_atomic
from virtkit.errors import ConfigError, EngineError, HostError
from virtkit.spec.machine import MachineConfig, NicConfig
from virtkit.spec.resolve import ImageResolver, build_boot_image, resolve

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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _network_manager() -> Any:
    try:
        from virtkit.network.manager import NetworkManager  # optional layer
    except ImportError:
        return None
    return NetworkManager()


class Service:
    def __init__(
        self,
        home: Path,
        engine_factory: str | None = None,
        use_cgroups: bool | None = None,
        use_networks: bool | None = None,
        images: ImageResolver = build_boot_image,
    ) -> None:
        """``images`` resolves a domain's ``image`` to its kernel and initrd (tests pass one that builds
        nothing)."""
        self.home = home
        self.images = images
        home.mkdir(parents=True, exist_ok=True)
        self.vms_dir = home / "vms"
        self.vms_dir.mkdir(exist_ok=True)
        self.store = Store(home / "virtkitd.db")
        self.events = EventBus(self.store)
        self.engine_factory = engine_factory or os.environ.get("VIRTKIT_ENGINE_FACTORY") or DEFAULT_ENGINE_FACTORY
        self.cgroup_version = cgroups.version() if use_cgroups is not False else None
        self.cgroup_parent = os.environ.get("VIRTKIT_CGROUP_PARENT") or cgroups.PARENT
        self._locks: dict[str, threading.RLock] = {}
        self._locks_lock = threading.Lock()
        self._define_lock = threading.Lock()
        self.handles: dict[str, Handle] = {}
        self._nm: Any = None
        # The network layer manages host bridges and firewall tables: off with --no-networks (tests do that).
        if use_networks is None:
            use_networks = os.environ.get("VIRTKIT_NO_NETWORKS", "") not in ("1", "true", "yes")
        self._nm_loaded = not use_networks

    # -- helpers
    def lock(self, name: str) -> threading.RLock:
        with self._locks_lock:
            return self._locks.setdefault(name, threading.RLock())

    def _cg(self, name: str) -> VmCgroup:
        return VmCgroup(name, self.cgroup_version, self.cgroup_parent)

    def vmdir(self, name: str) -> Path:
        return self.vms_dir / name

    def networks(self) -> Any:
        if not self._nm_loaded:
            self._nm = _network_manager()
            self._nm_loaded = True
        return self._nm

    def _state(self, row: DomainRow) -> DomainState:
        return row.state

    def _set_state(self, name: str, state: DomainState, reason: str) -> None:
        with contextlib.suppress(NotFound):
            self.store.set_state(name, state, reason)
        self.events.publish("lifecycle", name, str(state), reason)

    # -- recovery at start-up
    def recover(self, autostart: bool = True) -> None:
        """Re-attach every supervisor still running from a previous daemon; settle the others; autostart."""
        nm = self.networks()
        if nm is not None:  # networks first: autostart domains may need them
            for fn in ("adopt", "autostart_all") if autostart else ("adopt",):
                try:
                    getattr(nm, fn)()
                except Exception as e:
                    self.events.publish("error", None, None, f"networks: {fn} failed: {e}")
        for row in self.store.list_domains():
            self._reattach(row)
        if autostart:
            threading.Thread(target=self._autostart, daemon=True, name="autostart").start()

    def _reattach(self, row: DomainRow) -> None:
        d = self.vmdir(row.name)
        pidfile = d / PIDFILE
        pid = None
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text())
        if pid is not None and _pid_alive(pid):
            try:
                st = ctl.call(d / CTL, "status", timeout=10)
            except EngineError:
                st = None
            if st is not None:
                h = Handle(row.name, d, started_at=float(st.get("started_at") or time.time()))
                self.handles[row.name] = h
                self._follow(h)
                state = DomainState(st["state"])
                if state != row.state:
                    self._set_state(row.name, state, "re-attached")
                return
        if row.state in (DomainState.RUNNING, DomainState.PAUSED):
            final, reason = self._final_state(d, supervisor_died=True)
            self._cleanup_leftovers(row.name)
            self._set_state(row.name, final, reason + " (while the daemon was down)")

    def _autostart(self) -> None:
        for row in self.store.list_domains():
            if row.autostart and row.name not in self.handles and row.state != DomainState.RUNNING:
                try:
                    self.start(row.name, reason="autostart")
                except Exception as e:
                    self.events.publish("error", row.name, None, f"autostart failed: {e}")

    # -- definitions
    def define(self, spec: DomainSpec) -> DomainInfo:
        with self._define_lock:
            self.store.add_domain(spec)
        self.events.publish("defined", spec.name, str(DomainState.SHUTOFF))
        return self.info(spec.name)

    def undefine(self, name: str) -> None:
        with self.lock(name):
            row = self.store.get_domain(name)
            check_transition(name, self._live_state(row), Action.UNDEFINE)
            self.store.remove_domain(name)
            shutil.rmtree(self.vmdir(name), ignore_errors=True)
        self.events.publish("undefined", name)

    def set_autostart(self, name: str, enabled: bool) -> DomainInfo:
        with self.lock(name):
            self.store.set_autostart(name, enabled)
        return self.info(name)

    # -- queries
    def _live_state(self, row: DomainRow) -> DomainState:
        return self._live_state_of(row.name, row.state)

    def _live_state_of(self, name: str, stored: DomainState) -> DomainState:
        if name in self.handles:
            return stored if stored in (DomainState.RUNNING, DomainState.PAUSED) else DomainState.RUNNING
        if stored in (DomainState.RUNNING, DomainState.PAUSED):
            return DomainState.SHUTOFF  # stale row: nothing supervises it
        return stored

    def list_domains(self, all: bool = False) -> list[DomainSummary]:
        out = []
        for name, stored, autostart, engine in self.store.list_summaries():
            state = self._live_state_of(name, stored)
            if all or state in (DomainState.RUNNING, DomainState.PAUSED):
                out.append(DomainSummary.model_construct(name=name, state=state, autostart=autostart, engine=engine))
        return out

    def info(self, name: str) -> DomainInfo:
        row = self.store.get_domain(name)
        h = self.handles.get(name)
        st: dict[str, Any] = {}
        if h is not None:
            with contextlib.suppress(EngineError):
                st = ctl.call(h.ctl, "status", timeout=10)
        state = DomainState(st["state"]) if st else self._live_state(row)
        cg = self._cg(name) if self.cgroup_version else None
        cpu_ns = cg.cpu_time_ns() if (cg and h) else None
        if cpu_ns is None and st.get("engine_pid"):
            cpu_ns = self._proc_cpu_ns(int(st["engine_pid"]))
        return DomainInfo(
            name=name,
            state=state,
            # while the supervisor reports a change the watcher has not recorded yet, the old reason is stale
            state_reason=row.state_reason if state == row.state else "",
            autostart=row.autostart,
            engine=st.get("engine") or row.spec.engine,
            technique=st.get("technique"),
            vcpus=row.spec.vcpus,
            memory_mib=row.spec.memory,
            cpu_time_s=cpu_ns / 1e9 if cpu_ns is not None else None,
            uptime_s=(time.time() - float(st["started_at"])) if st.get("started_at") else None,
            engine_pid=st.get("engine_pid"),
            supervisor_pid=st.get("supervisor_pid"),
            cgroup=cg.limits() if (cg and h) else {},
            cgroup_paths=[str(p) for p in cg.paths.values()] if (cg and h) else [],
            spec=row.spec,
        )

    @staticmethod
    def _proc_cpu_ns(pid: int) -> int | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks = int(fields[11]) + int(fields[12])
            return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def _handle(self, name: str, action: str) -> Handle:
        self.store.get_domain(name)
        h = self.handles.get(name)
        if h is None:
            raise ConfigError(
                f"cannot {action} domain {name!r}: it is not running",
                hint=f"start it first with `virtkit start {name}`",
            )
        return h

    def stats(self, name: str) -> DomainStats:
        info = self.info(name)
        h = self.handles.get(name)
        extra: dict[str, Any] = {}
        if h is not None:
            with contextlib.suppress(EngineError):
                extra = ctl.call(h.ctl, "stats", timeout=10)
        cg = self._cg(name) if (self.cgroup_version and h) else None
        mem = cg.memory_bytes() if cg else None
        if mem is None and info.engine_pid:
            with contextlib.suppress(OSError, ValueError, IndexError):
                mem = int(Path(f"/proc/{info.engine_pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        return DomainStats(
            name=name,
            state=info.state,
            cpu_time_s=info.cpu_time_s,
            vcpus=info.vcpus,
            memory_mib=info.memory_mib,
            memory_used_bytes=mem,
            memory_limit_bytes=info.spec.memory_limit_mib() * 1024 * 1024 if cg else None,
            block=list(extra.get("block") or []),
            net=list(extra.get("net") or []),
        )

    def interfaces(self, name: str) -> list[Interface]:
        h = self._handle(name, "read the addresses of")
        try:
            raw = ctl.call(h.ctl, "interfaces", timeout=30) or []
        except EngineError:
            raw = None
        nm = self.networks()
        if nm is not None and hasattr(nm, "domifaddr"):
            # the network layer knows DHCP leases and reservations too (for guests without an agent)
            merged: dict[str, Interface] = {}
            for a in nm.domifaddr(name, raw):
                i = merged.setdefault(a.mac, Interface(name=a.ifname, mac=a.mac))
                if a.ip:
                    i.addresses.append(f"{a.ip}/{a.prefix}")
            if merged:
                return list(merged.values())
        if raw is None:
            raise EngineError(f"{name}'s guest agent did not answer", hint="wait until the guest has booted")
        out = []
        for it in raw:
            addrs = [f"{a.get('ip-address')}/{a.get('prefix')}" for a in it.get("ip-addresses") or []]
            out.append(Interface(name=str(it.get("name")), mac=it.get("hardware-address"), addresses=addrs))
        return out

    def exec(self, name: str, argv: list[str], timeout: float | None = 60.0, stdin: str | None = None) -> ExecResult:
        h = self._handle(name, "exec in")
        args: dict[str, Any] = {"argv": argv, "timeout": timeout}
        if stdin is not None:
            args["stdin_b64"] = base64.b64encode(stdin.encode()).decode()
        r = ctl.call(h.ctl, "exec", args, timeout=(timeout or 60.0) + 30)
        return ExecResult(
            exitcode=int(r["exitcode"]),
            stdout=base64.b64decode(r["stdout_b64"]).decode(errors="replace"),
            stderr=base64.b64decode(r["stderr_b64"]).decode(errors="replace"),
        )

    def wait_agent(self, name: str, timeout: float = defaults.READY_TIMEOUT_S) -> None:
        h = self._handle(name, "reach the agent of")
        ctl.call(h.ctl, "agent_ping", {"wait": True, "timeout": timeout}, timeout=timeout + 10)

    def console_log_path(self, name: str) -> Path | None:
        self.store.get_domain(name)
        h = self.handles.get(name)
        if h is None:
            return None
        with contextlib.suppress(EngineError):
            st = ctl.call(h.ctl, "status", timeout=10)
            if st.get("console_log"):
                return Path(st["console_log"])
        return None

    def console_write(self, name: str, data: bytes) -> None:
        h = self._handle(name, "write to the console of")
        ctl.call(h.ctl, "console_write", {"data_b64": base64.b64encode(data).decode()}, timeout=10)

    def host(self) -> HostInfo:
        from virtkit.daemon import engines

        rows = self.store.list_domains()
        return HostInfo(
            version=__version__,
            schema_version=self.store.schema_version(),
            cgroups=self.cgroup_version,
            engines=engines.availability(),
            domains=len(rows),
            running=len(self.handles),
        )

    # -- lifecycle
    def _resolve(self, spec: DomainSpec, h: Handle) -> MachineConfig:
        """The machine config for ``spec`` (:func:`virtkit.spec.resolve.resolve`); the NICs it plugs into
        networks are noted in ``h`` so that they are unplugged when the domain stops or fails to start."""
        nm = self.networks() if any(n.network is not None for n in spec.nics) else None

        def attach(i: int, nic: NetSpec) -> NicConfig:
            assert nm is not None and nic.network is not None
            plugged: NicConfig = nm.attach_nic(spec.name, i, nic.network)
            h.nics_attached.append(i)
            return plugged

        return resolve(spec, images=self.images, networks=attach if nm is not None else None)

    def _detach_nics(self, h: Handle) -> None:
        nm = self.networks() if h.nics_attached else None
        if nm is None:
            return
        for i in h.nics_attached:
            fn = getattr(nm, "detach_nic", None)
            if fn is not None:
                with contextlib.suppress(Exception):
                    fn(h.name, i)
        h.nics_attached.clear()

    def start(self, name: str, reason: str = "start") -> DomainInfo:
        with self.lock(name):
            row = self.store.get_domain(name)
            state = self._live_state(row)
            check_transition(name, state, Action.START)
            self._spawn(row, reason)
        return self.info(name)

    def _spawn(self, row: DomainRow, reason: str) -> None:
        name, spec = row.name, row.spec
        d = self.vmdir(name)
        d.mkdir(parents=True, exist_ok=True)
        for f in (STATEFILE, PIDFILE, CTL):
            with contextlib.suppress(FileNotFoundError):
                (d / f).unlink()
        h = Handle(name, d)
        try:
            mspec = self._resolve(spec, h)
        except BaseException:
            self._detach_nics(h)
            raise
        cg = self._cg(name) if self.cgroup_version else None
        if cg is not None:
            cg.create(CgroupLimits(cpus=spec.cpu_limit(), memory_bytes=spec.memory_limit_mib() * 1024 * 1024))
        config = {
            "name": name,
            "machine": mspec.to_json(),
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
                env=self._child_env(),
            )
        finally:
            os.close(wfd)
            log.close()
        try:
            msg = self._read_ready(rfd, proc)
        finally:
            os.close(rfd)
        if not msg.get("ok"):
            proc.wait()
            self._detach_nics(h)
            if cg is not None:
                cg.remove()
            if msg.get("error"):
                ctl.raise_remote(msg)
            raise EngineError(f"the supervisor of {name} failed to start", hint=f"see {d / 'vmproc.log'}")
        h.proc = proc
        h.started_at = time.time()
        self.handles[name] = h
        self._set_state(name, DomainState.RUNNING, reason)
        self._follow(h)

    @staticmethod
    def _child_env() -> dict[str, str]:
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[2])
        pp = env.get("PYTHONPATH", "")
        if src not in pp.split(os.pathsep):
            env["PYTHONPATH"] = src + (os.pathsep + pp if pp else "")
        return env

    @staticmethod
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

    def _follow(self, h: Handle) -> None:
        def run() -> None:
            for ev in ctl.watch(h.ctl):
                if ev.get("event") == "state" and not ev.get("final"):
                    st = DomainState(ev["state"])
                    row_state = None
                    with contextlib.suppress(NotFound):
                        row_state = self.store.get_domain(h.name).state
                    if st != row_state:
                        self._set_state(h.name, st, str(ev.get("reason", "")))
            self._ended(h)

        h.thread = threading.Thread(target=run, daemon=True, name=f"watch-{h.name}")
        h.thread.start()

    def _final_state(self, d: Path, supervisor_died: bool) -> tuple[DomainState, str]:
        try:
            st = json.loads((d / STATEFILE).read_text())
            return DomainState(st["state"]), str(st.get("reason", ""))
        except (OSError, ValueError, KeyError):
            return DomainState.CRASHED, "supervisor died" if supervisor_died else "unknown"

    def _cleanup_leftovers(self, name: str) -> None:
        """Kill whatever is left in the VM's cgroup (an engine orphaned by a dead supervisor)."""
        if not self.cgroup_version:
            return
        cg = self._cg(name)
        for _ in range(50):
            pids = cg.pids()
            if not pids:
                break
            for p in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
            time.sleep(0.05)
        cg.remove()

    def _ended(self, h: Handle) -> None:
        if h.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                h.proc.wait(10)
        else:
            pid = None
            with contextlib.suppress(OSError, ValueError):
                pid = int((h.vmdir / PIDFILE).read_text())
            for _ in range(100):
                if pid is None or not _pid_alive(pid):
                    break
                time.sleep(0.05)
        final, reason = self._final_state(h.vmdir, supervisor_died=True)
        self._cleanup_leftovers(h.name)
        self._detach_nics(h)
        if self.handles.get(h.name) is h:
            del self.handles[h.name]
        self._set_state(h.name, final, reason)
        h.stopped.set()

    def _act(
        self, name: str, action: Action, op: str, timeout: float = 30.0, args: dict[str, Any] | None = None
    ) -> DomainInfo:
        with self.lock(name):
            row = self.store.get_domain(name)
            h = self.handles.get(name)
            state = self._live_state(row)
            if h is not None:
                with contextlib.suppress(EngineError):
                    state = DomainState(ctl.call(h.ctl, "status", timeout=10)["state"])
            check_transition(name, state, action)
            if h is None:  # destroy of a crashed domain: just settle it
                self._cleanup_leftovers(name)
                self._set_state(name, DomainState.SHUTOFF, "destroyed")
                return self.info(name)
            with contextlib.suppress(ctl.SupervisorGone):  # it ended meanwhile; the watcher records how
                ctl.call(h.ctl, op, args, timeout=timeout + 30)
            if action in (Action.SHUTDOWN, Action.DESTROY):
                h.stopped.wait(30)
            else:
                with contextlib.suppress(EngineError):
                    now = DomainState(ctl.call(h.ctl, "status", timeout=10)["state"])
                    if now != self.store.get_domain(name).state:
                        self._set_state(name, now, str(action))
        return self.info(name)

    def shutdown(self, name: str, timeout: float = 30.0) -> DomainInfo:
        return self._act(name, Action.SHUTDOWN, "shutdown", timeout=timeout, args={"timeout": timeout})

    def destroy(self, name: str) -> DomainInfo:
        return self._act(name, Action.DESTROY, "destroy")

    def reboot(self, name: str) -> DomainInfo:
        return self._act(name, Action.REBOOT, "reboot")

    def suspend(self, name: str) -> DomainInfo:
        return self._act(name, Action.SUSPEND, "pause")

    def resume(self, name: str) -> DomainInfo:
        return self._act(name, Action.RESUME, "resume")

    # -- snapshots: disks always (a file copy taken while the guest is paused, which makes QEMU flush, or
    # off), guest memory where the engine can save it.
    def _snapdir(self, name: str, snap: str) -> Path:
        return self.vmdir(name) / "snapshots" / snap

    def _writable_disks(self, spec: DomainSpec) -> list[DiskSpec]:
        return [d for d in spec.disks if not d.readonly]

    def snapshot_create(self, name: str, snap: str, description: str = "", memory: bool | None = None) -> SnapshotInfo:
        with self.lock(name):
            row = self.store.get_domain(name)
            if any(s.name == snap for s in self.store.list_snapshots(name)):
                raise Conflict(
                    f"domain {name!r} already has a snapshot {snap!r}",
                    hint="pick another snapshot name or delete the old one",
                )
            h = self.handles.get(name)
            state = self._live_state(row)
            if memory and h is None:
                raise ConfigError(
                    f"cannot save the memory of {name!r}: it is {state}",
                    hint="start it first, or take a disk-only snapshot",
                )
            sd = self._snapdir(name, snap)
            sd.mkdir(parents=True, exist_ok=True)
            paused_here = False
            with_memory = False
            try:
                if h is not None and state == DomainState.RUNNING:
                    ctl.call(h.ctl, "pause", timeout=30)
                    paused_here = True
                if h is not None and memory is not False:
                    try:
                        ctl.call(h.ctl, "snapshot_save", {"name": snap}, timeout=600)
                        with_memory = True
                    except EngineError:
                        if memory:
                            raise
                if not with_memory:  # an internal snapshot already holds the disks' state
                    for i, disk in enumerate(self._writable_disks(row.spec)):
                        shutil.copyfile(disk.path, sd / f"disk{i}")
            except BaseException:
                shutil.rmtree(sd, ignore_errors=True)
                raise
            finally:
                if paused_here and h is not None:
                    with contextlib.suppress(EngineError):
                        ctl.call(h.ctl, "resume", timeout=30)
            s = SnapshotRow(name, snap, time.time(), description, with_memory, state)
            self.store.add_snapshot(s)
        self.events.publish("snapshot", name, str(state), f"created {snap}")
        return SnapshotInfo(
            domain=name, name=snap, created=s.created, description=description, memory=with_memory, state=state
        )

    def snapshot_list(self, name: str) -> list[SnapshotInfo]:
        self.store.get_domain(name)
        return [
            SnapshotInfo(
                domain=s.domain,
                name=s.name,
                created=s.created,
                description=s.description,
                memory=s.memory,
                state=s.state,
            )
            for s in self.store.list_snapshots(name)
        ]

    def snapshot_revert(self, name: str, snap: str) -> DomainInfo:
        with self.lock(name):
            row = self.store.get_domain(name)
            s = self.store.get_snapshot(name, snap)
            h = self.handles.get(name)
            sd = self._snapdir(name, snap)
            if s.memory:
                if h is None:  # the saved memory needs a running engine to load into
                    self._spawn(row, f"reverting to {snap}")
                    h = self.handles[name]
                ctl.call(h.ctl, "pause", timeout=30)
                ctl.call(h.ctl, "snapshot_load", {"name": snap}, timeout=600)
                if s.state == DomainState.RUNNING:
                    ctl.call(h.ctl, "resume", timeout=30)
                self._set_state(
                    name, DomainState(ctl.call(h.ctl, "status", timeout=10)["state"]), f"reverted to {snap}"
                )
            else:
                if h is not None:
                    with contextlib.suppress(ctl.SupervisorGone):
                        ctl.call(h.ctl, "destroy", timeout=60)
                    h.stopped.wait(30)
                for i, disk in enumerate(self._writable_disks(row.spec)):
                    src = sd / f"disk{i}"
                    if src.exists():
                        shutil.copyfile(src, disk.path)
                if s.state in (DomainState.RUNNING, DomainState.PAUSED):
                    self._spawn(self.store.get_domain(name), f"reverted to {snap}")
                    if s.state == DomainState.PAUSED:
                        ctl.call(self.handles[name].ctl, "pause", timeout=30)
        self.events.publish("snapshot", name, None, f"reverted to {snap}")
        return self.info(name)

    def snapshot_delete(self, name: str, snap: str) -> None:
        with self.lock(name):
            s = self.store.get_snapshot(name, snap)
            h = self.handles.get(name)
            if s.memory and h is not None:
                with contextlib.suppress(EngineError):
                    ctl.call(h.ctl, "snapshot_delete", {"name": snap}, timeout=60)
            elif s.memory:  # offline: drop the internal snapshot from the qcow2 files
                for d in self._writable_disks(self.store.get_domain(name).spec):
                    if d.format == "qcow2":
                        subprocess.run(["qemu-img", "snapshot", "-d", snap, str(d.path)], capture_output=True)
            self.store.remove_snapshot(name, snap)
            shutil.rmtree(self._snapdir(name, snap), ignore_errors=True)
        self.events.publish("snapshot", name, None, f"deleted {snap}")

    def stop_all_for_tests(self) -> None:
        """Destroy every running VM (test teardown; the daemon never does this on its own)."""
        for name in list(self.handles):
            with contextlib.suppress(Exception):
                self.destroy(name)


__all__ = ["HostError", "Service"]
