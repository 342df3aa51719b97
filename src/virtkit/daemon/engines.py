"""Engine choice for a domain, made inside the VM's supervisor process (``engines.select`` decides)."""

from __future__ import annotations

from pathlib import Path

from virtkit.config.machine import MachineSpec
from virtkit.engines.base import Engine, Machine


def make_engine(requested: str) -> Engine:
    from virtkit.engines.select import pick_engine

    return pick_engine(requested)


def start_machine(engine: Engine, spec: MachineSpec, workdir: Path) -> Machine:
    """Start ``spec`` with the engine process's life tied to the supervisor's, so a dead supervisor never
    leaves an unsupervised guest behind. (A refused QMP connect at start is retried inside the engine.)"""
    return engine.start(spec, workdir, die_with_parent=True)


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
