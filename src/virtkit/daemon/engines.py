"""Which engine runs a domain: ``qemu``, ``native``, or ``auto`` (native where it can run an unmodified
guest on this host, QEMU otherwise). Used inside the VM's supervisor process."""

from __future__ import annotations

import importlib
from typing import Any

from virtkit.engines.base import Engine
from virtkit.errors import HostError


def _load(name: str) -> Engine | None:
    mods = {"qemu": ("virtkit.engines.qemu", "QemuEngine"), "native": ("virtkit.engines.native", "NativeEngine")}
    mod, cls = mods[name]
    try:
        m: Any = importlib.import_module(mod)
    except ImportError:
        return None
    e: Engine = getattr(m, cls)()
    return e


def make_engine(requested: str) -> Engine:
    if requested in ("qemu", "native"):
        e = _load(requested)
        if e is None:
            raise HostError(f"the {requested} engine is not part of this virtkit build",
                            hint="use engine = 'auto' or 'qemu'")
        av = e.availability()
        if not av.usable:
            raise HostError(f"the {requested} engine cannot run here: {av.reason}", hint="use engine = 'auto'")
        return e
    reasons = []
    for name in ("native", "qemu"):
        e = _load(name)
        if e is None:
            continue
        av = e.availability()
        if av.usable:
            return e
        reasons.append(f"{name}: {av.reason}")
    raise HostError("no engine can run a guest on this host (" + "; ".join(reasons) + ")",
                    hint="install qemu-system-x86")


def availability() -> dict[str, str]:
    out = {}
    for name in ("qemu", "native"):
        e = _load(name)
        if e is None:
            out[name] = "not installed"
            continue
        try:
            av = e.availability()
            out[name] = str(av.technique) if av.usable else f"unusable: {av.reason}"
        except Exception as ex:  # a probe must never take the daemon down
            out[name] = f"unusable: {ex}"
    return out
