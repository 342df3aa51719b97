"""Domain snapshots: disks always (a file copy taken while the guest is paused, which makes QEMU flush, or
off), guest memory where the engine can save it (QEMU keeps it inside the qcow2 disks, as internal
snapshots that ``qemu-img snapshot -d`` drops while the domain is off).

Each snapshot is a row in the store and, for disk copies, a directory ``<vmdir>/snapshots/<name>``.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from virtkit.daemon import ctl
from virtkit.daemon.domain import DomainSpec, DomainState
from virtkit.daemon.events import EventBus
from virtkit.daemon.models import SnapshotInfo
from virtkit.daemon.store import Conflict, DomainRow, SnapshotRow, Store
from virtkit.daemon.supervisors import Supervisors
from virtkit.errors import ConfigError, EngineError
from virtkit.spec.domain import DiskSpec


def writable_disks(spec: DomainSpec) -> list[DiskSpec]:
    return [d for d in spec.disks if not d.readonly]


def _info(s: SnapshotRow) -> SnapshotInfo:
    return SnapshotInfo(
        domain=s.domain, name=s.name, created=s.created, description=s.description, memory=s.memory, state=s.state
    )


class Snapshots:
    """Snapshot bookkeeping and the steps around it. The domain lifecycle it needs (the domain's lock, its
    live state, starting it, recording a state) comes in as the service's own functions."""

    def __init__(
        self,
        store: Store,
        events: EventBus,
        supervisors: Supervisors,
        lock: Callable[[str], threading.RLock],
        live_state: Callable[[DomainRow], DomainState],
        spawn: Callable[[DomainRow, str], None],
        set_state: Callable[[str, DomainState, str], None],
    ) -> None:
        self.store = store
        self.events = events
        self.supervisors = supervisors
        self._lock = lock
        self._live_state = live_state
        self._spawn = spawn
        self._set_state = set_state

    def snapdir(self, name: str, snap: str) -> Path:
        return self.supervisors.vmdir(name) / "snapshots" / snap

    def create(self, name: str, snap: str, description: str = "", memory: bool | None = None) -> SnapshotInfo:
        with self._lock(name):
            row = self.store.get_domain(name)
            if any(s.name == snap for s in self.store.list_snapshots(name)):
                raise Conflict(
                    f"domain {name!r} already has a snapshot {snap!r}",
                    hint="pick another snapshot name or delete the old one",
                )
            h = self.supervisors.get(name)
            state = self._live_state(row)
            if memory and h is None:
                raise ConfigError(
                    f"cannot save the memory of {name!r}: it is {state}",
                    hint="start it first, or take a disk-only snapshot",
                )
            for i, disk in enumerate(row.spec.disks):
                if not disk.readonly and not disk.path.is_file():
                    raise ConfigError(
                        f"cannot snapshot {name!r}: disks.{i}.path {disk.path} does not exist",
                        hint="create it (qemu-img create) or fix the path in the domain spec",
                    )
            sd = self.snapdir(name, snap)
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
                    for i, disk in enumerate(writable_disks(row.spec)):
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
        return _info(s)

    def list(self, name: str) -> list[SnapshotInfo]:
        self.store.get_domain(name)
        return [_info(s) for s in self.store.list_snapshots(name)]

    def revert(self, name: str, snap: str) -> None:
        with self._lock(name):
            row = self.store.get_domain(name)
            s = self.store.get_snapshot(name, snap)
            h = self.supervisors.get(name)
            sd = self.snapdir(name, snap)
            if s.memory:
                if h is None:  # the saved memory needs a running engine to load into
                    self._spawn(row, f"reverting to {snap}")
                    h = self.supervisors.handles[name]
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
                for i, disk in enumerate(writable_disks(row.spec)):
                    src = sd / f"disk{i}"
                    if src.exists():
                        shutil.copyfile(src, disk.path)
                if s.state in (DomainState.RUNNING, DomainState.PAUSED):
                    self._spawn(self.store.get_domain(name), f"reverted to {snap}")
                    if s.state == DomainState.PAUSED:
                        ctl.call(self.supervisors.handles[name].ctl, "pause", timeout=30)
        self.events.publish("snapshot", name, None, f"reverted to {snap}")

    def delete(self, name: str, snap: str) -> None:
        with self._lock(name):
            s = self.store.get_snapshot(name, snap)
            h = self.supervisors.get(name)
            if s.memory and h is not None:
                with contextlib.suppress(EngineError):
                    ctl.call(h.ctl, "snapshot_delete", {"name": snap}, timeout=60)
            elif s.memory:  # offline: drop the internal snapshot from the qcow2 files
                for d in writable_disks(self.store.get_domain(name).spec):
                    if d.format == "qcow2":
                        subprocess.run(["qemu-img", "snapshot", "-d", snap, str(d.path)], capture_output=True)
            self.store.remove_snapshot(name, snap)
            shutil.rmtree(self.snapdir(name, snap), ignore_errors=True)
        self.events.publish("snapshot", name, None, f"deleted {snap}")
