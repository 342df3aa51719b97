"""The daemon's logic: domains in the store, their lifecycle, queries and events.

It composes the parts that do the work, each in its own module: :mod:`~virtkit.daemon.supervisors` (one
supervisor process per running VM, its cgroup, re-attaching after a restart), :mod:`~virtkit.daemon.snapshots`,
:mod:`~virtkit.daemon.procinfo` (what /proc says where no cgroup does) and the host's network layer through
:class:`~virtkit.daemon.networks.NetworkAttacher`. Actions on one domain are serialized by that domain's lock
(Firecracker's habit: the API queues actions, it never pokes VM state directly).
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from virtkit import __version__
from virtkit.config import defaults
from virtkit.daemon import cgroups, ctl, procinfo
from virtkit.daemon.domain import Action, DomainSpec, DomainState, NetSpec, check_transition
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
from virtkit.daemon.networks import NetworkAttacher
from virtkit.daemon.snapshots import Snapshots
from virtkit.daemon.store import DomainRow, NotFound, Store
from virtkit.daemon.supervisors import DEFAULT_ENGINE_FACTORY, Handle, Supervisors
from virtkit.errors import ConfigError, EngineError, HostError
from virtkit.spec.machine import MachineConfig, NicConfig
from virtkit.spec.resolve import ImageResolver, build_boot_image, resolve


class Service:
    def __init__(
        self,
        home: Path,
        engine_factory: str = DEFAULT_ENGINE_FACTORY,
        use_cgroups: bool | None = None,
        networks: NetworkAttacher | None = None,
        images: ImageResolver = build_boot_image,
    ) -> None:
        """``engine_factory``: "module:callable" the supervisors start engines with (tests name a fake one).
        ``networks``: the host's network layer, or None to leave host networks alone (only 'user' NICs).
        ``images`` resolves a domain's ``image`` to its kernel and initrd (tests pass one that builds nothing)."""
        self.home = home
        self.images = images
        home.mkdir(parents=True, exist_ok=True)
        self.store = Store(home / "virtkitd.db")
        self.events = EventBus(self.store)
        self.supervisors = Supervisors(
            home / "vms",
            engine_factory,
            cgroups.version() if use_cgroups is not False else None,
            os.environ.get("VIRTKIT_CGROUP_PARENT") or cgroups.PARENT,
            on_report=self._reported,
            on_end=self._ended,
        )
        self.snapshots = Snapshots(
            self.store, self.events, self.supervisors, self.lock, self._live_state, self._spawn, self._set_state
        )
        self._locks: dict[str, threading.RLock] = {}
        self._locks_lock = threading.Lock()
        self._define_lock = threading.Lock()
        self._networks = networks

    # -- helpers
    def lock(self, name: str) -> threading.RLock:
        with self._locks_lock:
            return self._locks.setdefault(name, threading.RLock())

    def networks(self) -> NetworkAttacher | None:
        """The host's network layer; None when this daemon leaves host networks alone."""
        return self._networks

    def is_running(self, name: str) -> bool:
        """Whether a supervisor runs ``name`` (running or paused)."""
        return name in self.supervisors

    def _set_state(self, name: str, state: DomainState, reason: str) -> None:
        with contextlib.suppress(NotFound):
            self.store.set_state(name, state, reason)
        self.events.publish("lifecycle", name, str(state), reason)

    # -- what the supervisors report
    def _reported(self, name: str, state: DomainState, reason: str) -> None:
        row_state = None
        with contextlib.suppress(NotFound):
            row_state = self.store.get_domain(name).state
        if state != row_state:
            self._set_state(name, state, reason)

    def _ended(self, h: Handle, final: DomainState, reason: str) -> None:
        self._detach_nics(h)
        self.supervisors.forget(h)  # before the state is published: a reader then sees it stopped
        self._set_state(h.name, final, reason)

    # -- recovery at start-up
    def recover(self, autostart: bool = True) -> None:
        """Re-attach every supervisor still running from a previous daemon; settle the others; autostart."""
        nm = self.networks()
        if nm is not None:  # networks first: autostart domains may need them
            steps = [("adopt", nm.adopt), ("autostart_all", nm.autostart_all)] if autostart else [("adopt", nm.adopt)]
            for what, step in steps:
                try:
                    step()
                except Exception as e:
                    self.events.publish("error", None, None, f"networks: {what} failed: {e}")
        for row in self.store.list_domains():
            self._reattach(row)
        if autostart:
            threading.Thread(target=self._autostart, daemon=True, name="autostart").start()

    def _reattach(self, row: DomainRow) -> None:
        st = self.supervisors.reattach(row.name)
        if st is not None:
            state = DomainState(st["state"])
            if state != row.state:
                self._set_state(row.name, state, "re-attached")
        elif row.state in (DomainState.RUNNING, DomainState.PAUSED):
            final, reason = self.supervisors.settle(row.name)
            self._set_state(row.name, final, reason + " (while the daemon was down)")

    def _autostart(self) -> None:
        for row in self.store.list_domains():
            if row.autostart and row.name not in self.supervisors and row.state != DomainState.RUNNING:
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
            shutil.rmtree(self.supervisors.vmdir(name), ignore_errors=True)
        self.events.publish("undefined", name)

    def set_autostart(self, name: str, enabled: bool) -> DomainInfo:
        with self.lock(name):
            self.store.set_autostart(name, enabled)
        return self.info(name)

    # -- queries
    def _live_state(self, row: DomainRow) -> DomainState:
        return self._live_state_of(row.name, row.state)

    def _live_state_of(self, name: str, stored: DomainState) -> DomainState:
        if name in self.supervisors:
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
        h = self.supervisors.get(name)
        st: dict[str, Any] = {}
        if h is not None:
            with contextlib.suppress(EngineError):
                st = ctl.call(h.ctl, "status", timeout=10)
        state = DomainState(st["state"]) if st else self._live_state(row)
        cg = self.supervisors.cgroup(name) if h else None
        cpu_ns = cg.cpu_time_ns() if cg else None
        if cpu_ns is None and st.get("engine_pid"):
            cpu_ns = procinfo.cpu_time_ns(int(st["engine_pid"]))
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
            cgroup=cg.limits() if cg else {},
            cgroup_paths=[str(p) for p in cg.paths.values()] if cg else [],
            spec=row.spec,
        )

    def _handle(self, name: str, action: str) -> Handle:
        self.store.get_domain(name)
        h = self.supervisors.get(name)
        if h is None:
            raise ConfigError(
                f"cannot {action} domain {name!r}: it is not running",
                hint=f"start it first with `virtkit start {name}`",
            )
        return h

    def stats(self, name: str) -> DomainStats:
        info = self.info(name)
        h = self.supervisors.get(name)
        extra: dict[str, Any] = {}
        if h is not None:
            with contextlib.suppress(EngineError):
                extra = ctl.call(h.ctl, "stats", timeout=10)
        cg = self.supervisors.cgroup(name) if h else None
        mem = cg.memory_bytes() if cg else None
        if mem is None and info.engine_pid:
            mem = procinfo.resident_bytes(info.engine_pid)
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
        if nm is not None:
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
        h = self.supervisors.get(name)
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
            cgroups=self.supervisors.cgroup_version,
            engines=engines.availability(),
            domains=len(rows),
            running=len(self.supervisors),
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
            with contextlib.suppress(Exception):
                nm.detach_nic(h.name, i)
        h.nics_attached.clear()

    def start(self, name: str, reason: str = "start") -> DomainInfo:
        with self.lock(name):
            row = self.store.get_domain(name)
            state = self._live_state(row)
            check_transition(name, state, Action.START)
            self._spawn(row, reason)
        return self.info(name)

    def _spawn(self, row: DomainRow, reason: str) -> None:
        h = self.supervisors.prepare(row.name)
        try:
            mspec = self._resolve(row.spec, h)
            self.supervisors.launch(h, row.spec, mspec)
        except BaseException:
            self._detach_nics(h)
            raise
        self._set_state(row.name, DomainState.RUNNING, reason)
        self.supervisors.follow(h)

    def _act(
        self, name: str, action: Action, op: str, timeout: float = 30.0, args: dict[str, Any] | None = None
    ) -> DomainInfo:
        with self.lock(name):
            row = self.store.get_domain(name)
            h = self.supervisors.get(name)
            state = self._live_state(row)
            if h is not None:
                with contextlib.suppress(EngineError):
                    state = DomainState(ctl.call(h.ctl, "status", timeout=10)["state"])
            check_transition(name, state, action)
            if h is None:  # destroy of a crashed domain: just settle it
                self.supervisors.cleanup_leftovers(name)
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

    # -- snapshots (daemon/snapshots.py)
    def snapshot_create(self, name: str, snap: str, description: str = "", memory: bool | None = None) -> SnapshotInfo:
        return self.snapshots.create(name, snap, description, memory)

    def snapshot_list(self, name: str) -> list[SnapshotInfo]:
        return self.snapshots.list(name)

    def snapshot_revert(self, name: str, snap: str) -> DomainInfo:
        self.snapshots.revert(name, snap)
        return self.info(name)

    def snapshot_delete(self, name: str, snap: str) -> None:
        self.snapshots.delete(name, snap)


__all__ = ["HostError", "Service"]
