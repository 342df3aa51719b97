"""Per-VM cgroups with CPU and memory limits: cgroup v2 where the host has a unified hierarchy with the
cpu and memory controllers, cgroup v1 (``cpu``/``memory`` mounts) otherwise.

Each VM gets ``virtkit/<name>`` under every controller it uses. The supervisor process joins it before it
starts the engine, so the engine and everything it forks inherit the limits.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from virtkit.errors import HostError

CGROUP_ROOT = Path(os.environ.get("VIRTKIT_CGROUP_ROOT", "/sys/fs/cgroup"))
PERIOD_US = 100_000
PARENT = "virtkit"


@dataclass(frozen=True)
class CgroupLimits:
    cpus: float
    memory_bytes: int

    @property
    def quota_us(self) -> int:
        return max(1000, round(self.cpus * PERIOD_US))


def _read(p: Path) -> str:
    return p.read_text().strip()


def _v2_root() -> Path | None:
    """The unified hierarchy if it can give us cpu and memory (pure v2 host or hybrid with them enabled)."""
    for cand in (CGROUP_ROOT, CGROUP_ROOT / "unified"):
        ctl = cand / "cgroup.controllers"
        if ctl.exists():
            have = set(_read(ctl).split())
            if {"cpu", "memory"} <= have:
                return cand
    return None


def version() -> int | None:
    """2, 1, or None when the host gives us no usable cgroups (not root, nothing mounted)."""
    if _v2_root() is not None:
        return 2
    if (CGROUP_ROOT / "cpu" / "cpu.cfs_quota_us").exists() and (
        CGROUP_ROOT / "memory" / "memory.limit_in_bytes"
    ).exists():
        return 1
    return None


class VmCgroup:
    """The cgroup(s) of one VM. ``paths`` are the directories, one per hierarchy."""

    def __init__(self, name: str, ver: int | None = None, parent: str | None = None) -> None:
        self.name = name
        parent = parent or os.environ.get("VIRTKIT_CGROUP_PARENT") or PARENT
        self.version = version() if ver is None else ver
        if self.version == 2:
            root = _v2_root()
            assert root is not None
            self.paths = {"unified": root / parent / name}
        elif self.version == 1:
            self.paths = {c: CGROUP_ROOT / c / parent / name for c in ("cpu", "memory", "cpuacct")}
            if not (CGROUP_ROOT / "cpuacct").is_dir():
                del self.paths["cpuacct"]
        else:
            self.paths = {}

    @property
    def available(self) -> bool:
        return bool(self.paths)

    def create(self, limits: CgroupLimits) -> None:
        if not self.available:
            return
        try:
            if self.version == 2:
                root = self.paths["unified"].parent.parent
                parent = self.paths["unified"].parent
                parent.mkdir(exist_ok=True)
                # controllers must be enabled top-down for the child to get cpu.max / memory.max
                for d in (root, parent):
                    with contextlib.suppress(OSError):
                        (d / "cgroup.subtree_control").write_text("+cpu +memory")
                g = self.paths["unified"]
                g.mkdir(exist_ok=True)
                (g / "cpu.max").write_text(f"{limits.quota_us} {PERIOD_US}")
                (g / "memory.max").write_text(str(limits.memory_bytes))
                with contextlib.suppress(OSError):
                    (g / "memory.swap.max").write_text("0")
            else:
                for p in self.paths.values():
                    p.mkdir(parents=True, exist_ok=True)
                cpu = self.paths["cpu"]
                (cpu / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (cpu / "cpu.cfs_quota_us").write_text(str(limits.quota_us))
                (self.paths["memory"] / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
        except OSError as e:
            raise HostError(
                f"cannot set up cgroup for {self.name}: {e}",
                hint="run virtkitd as root with cgroups mounted under /sys/fs/cgroup",
            ) from e

    def join(self, pid: int) -> None:
        for p in self.paths.values():
            (p / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        for p in self.paths.values():
            with contextlib.suppress(OSError):
                return [int(x) for x in _read(p / "cgroup.procs").split()]
        return []

    def limits(self) -> dict[str, str]:
        """The limit files as the kernel shows them (what tests check)."""
        out: dict[str, str] = {}
        if self.version == 2:
            g = self.paths["unified"]
            for f in ("cpu.max", "memory.max"):
                with contextlib.suppress(OSError):
                    out[f] = _read(g / f)
        elif self.version == 1:
            for key, f in (
                ("cpu", "cpu.cfs_quota_us"),
                ("cpu", "cpu.cfs_period_us"),
                ("memory", "memory.limit_in_bytes"),
            ):
                with contextlib.suppress(OSError):
                    out[f] = _read(self.paths[key] / f)
        return out

    def cpu_time_ns(self) -> int | None:
        with contextlib.suppress(OSError, KeyError, ValueError):
            if self.version == 2:
                for line in _read(self.paths["unified"] / "cpu.stat").splitlines():
                    k, v = line.split()
                    if k == "usage_usec":
                        return int(v) * 1000
            elif self.version == 1:
                return int(_read(self.paths["cpuacct"] / "cpuacct.usage"))
        return None

    def memory_bytes(self) -> int | None:
        with contextlib.suppress(OSError, KeyError, ValueError):
            if self.version == 2:
                return int(_read(self.paths["unified"] / "memory.current"))
            if self.version == 1:
                return int(_read(self.paths["memory"] / "memory.usage_in_bytes"))
        return None

    def oom_killed(self) -> bool:
        with contextlib.suppress(OSError, KeyError, ValueError):
            if self.version == 2:
                for line in _read(self.paths["unified"] / "memory.events").splitlines():
                    k, v = line.split()
                    if k == "oom_kill" and int(v) > 0:
                        return True
            elif self.version == 1:
                for line in _read(self.paths["memory"] / "memory.oom_control").splitlines():
                    k, v = line.split()
                    if k == "oom_kill" and int(v) > 0:
                        return True
        return False

    def remove(self) -> None:
        """Remove the group once it is empty (a leftover process keeps it; that is reported, not fatal)."""
        for p in self.paths.values():
            with contextlib.suppress(OSError):
                p.rmdir()

    def remove_parent(self) -> None:
        """Remove the (empty) parent group; tests use their own parent and clean it up."""
        for p in self.paths.values():
            with contextlib.suppress(OSError):
                p.parent.rmdir()
