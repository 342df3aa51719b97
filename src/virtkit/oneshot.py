"""A throwaway machine for one job: boot, wait for the agent, hand it over, then power off and clean up.

This is what ``virtkit run`` does; tests and benchmarks use it too. Everything it creates lives in one
run directory that is removed on the way out, whether the job ended, failed or was interrupted.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from virtkit.config import defaults
from virtkit.engines.base import Engine, Machine, VmState
from virtkit.spec.machine import BootConfig, DiskConfig, MachineConfig, NicConfig
from virtkit.spec.resolve import guest_cmdline


@dataclass
class OneShot:
    machine: Machine
    workdir: Path
    boot_seconds: float
    kernel_version: str | None = None
    notes: list[str] = field(default_factory=list)


def spec_for(
    kernel: Path,
    initrd: Path | None,
    *,
    name: str | None = None,
    cmdline: str = defaults.DEFAULT_CMDLINE,
    memory_mib: int = defaults.DEFAULT_MEMORY_MIB,
    vcpus: int = defaults.DEFAULT_VCPUS,
    disks: tuple[DiskConfig, ...] = (),
    nics: tuple[NicConfig, ...] = (),
    paravirt: bool = True,
) -> MachineConfig:
    """A machine config for a kernel and initrd at hand, with disks and NICs already resolved (tests and
    benchmarks; ``virtkit run`` goes through :func:`virtkit.spec.resolve.resolve`)."""
    name = name or f"run-{secrets.token_hex(3)}"
    return MachineConfig(
        name=name,
        vcpus=vcpus,
        memory_mib=memory_mib,
        boot=BootConfig(kernel=kernel, initrd=initrd, cmdline=guest_cmdline(name, cmdline)),
        disks=disks,
        nics=nics,
        paravirt=paravirt,
    )


@contextlib.contextmanager
def oneshot(
    engine: Engine,
    spec: MachineConfig,
    *,
    ready_timeout: float = defaults.READY_TIMEOUT_S,
    keep: bool = False,
    run_root: Path | None = None,
    wait_agent: bool = True,
) -> Iterator[OneShot]:
    """Start ``spec`` on ``engine`` and wait until its agent answers; stop and clean up on exit.

    With ``keep`` the machine and its run directory stay when the block ends normally (never on error).
    """
    root = run_root or defaults.run_dir()
    root.mkdir(parents=True, exist_ok=True)
    workdir = root / spec.name
    if workdir.exists():
        shutil.rmtree(workdir)
    machine: Machine | None = None
    ok = False
    try:
        t0 = time.monotonic()
        machine = engine.start(spec, workdir, die_with_parent=not keep)
        if wait_agent and spec.agent:
            machine.wait_ready(ready_timeout)
        yield OneShot(machine=machine, workdir=workdir, boot_seconds=time.monotonic() - t0)
        ok = True
    finally:
        if machine is not None and not (keep and ok):
            _stop(machine)
        elif machine is not None:
            machine.detach()
        if not (keep and ok):
            shutil.rmtree(workdir, ignore_errors=True)


def _stop(machine: Machine, timeout: float = 10.0) -> None:
    """Power off through the agent (fast, clean); fall back to ACPI, then destroy."""
    with contextlib.suppress(Exception):
        if machine.status() is VmState.RUNNING:
            machine.agent().shutdown("powerdown")
            if machine.wait(timeout) is VmState.SHUTOFF:
                machine.destroy()
                return
    with contextlib.suppress(Exception):
        machine.shutdown(timeout=timeout)
    machine.destroy()
