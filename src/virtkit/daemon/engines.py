"""Engine choice for a domain, made inside the VM's supervisor process (``engines.select`` decides)."""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Any

from virtkit.config.machine import MachineSpec
from virtkit.engines.base import Engine, Machine
from virtkit.errors import EngineError


def make_engine(requested: str) -> Engine:
    from virtkit.engines.select import pick_engine

    return pick_engine(requested)


def start_machine(engine: Any, spec: MachineSpec, workdir: Path) -> Machine:
    """Start ``spec``; where the engine can, tie the engine process's life to the supervisor's, so a dead
    supervisor never leaves an unsupervised guest behind."""
    kw = {}
    with_params = inspect.signature(engine.start).parameters
    if "die_with_parent" in with_params:
        kw["die_with_parent"] = True
    for attempt in range(3):
        try:
            m: Machine = engine.start(spec, workdir, **kw)
            return m
        except EngineError as e:
            # QEMU creates its QMP socket file at bind() and listens a moment later; a connect in that gap
            # is refused (seen under load). The engine has already cleaned up; starting again is safe.
            if "Connection refused" not in e.message or attempt == 2:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def availability() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        from virtkit.engines.qemu import QemuEngine

        av = QemuEngine().availability()
        out["qemu"] = str(av.technique) if av.usable else f"unusable: {av.reason}"
    except Exception as e:  # a probe must never take the daemon down
        out["qemu"] = f"unusable: {e}"
    try:
        from virtkit.engines.select import native_engine
        from virtkit.host.probe import probe

        native = native_engine(probe())
        if native is None:
            out["native"] = "not installed"
        else:
            av = native.availability()
            out["native"] = str(av.technique) if av.usable else f"unusable: {av.reason}"
    except Exception as e:
        out["native"] = f"unusable: {e}"
    return out
