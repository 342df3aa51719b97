"""Choosing an engine for this host: ``auto`` takes the best technique that runs an unmodified guest."""

from __future__ import annotations

from virtkit.engines.base import Engine
from virtkit.engines.qemu import QemuEngine
from virtkit.errors import ConfigError, HostError
from virtkit.host.probe import HostReport, probe

ENGINE_NAMES = ("auto", "qemu", "native")


def native_engine(report: HostReport) -> Engine | None:
    """The native engine, when it is installed (it arrives with the native VMM)."""
    try:
        from virtkit.engines.native import NativeEngine  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    engine: Engine = NativeEngine(report=report)
    return engine


def pick_engine(name: str = "auto", report: HostReport | None = None) -> Engine:
    if name not in ENGINE_NAMES:
        raise ConfigError(f"unknown engine {name!r}", hint=f"use one of {', '.join(ENGINE_NAMES)}")
    report = report or probe()
    if name == "qemu":
        return QemuEngine(report=report)
    native = native_engine(report)
    if name == "native":
        if native is None:
            raise HostError("the native engine is not available in this build", hint="use --engine qemu")
        return native
    # auto: our own VMM when the CPU runs unmodified guests natively, else QEMU (KVM or TCG).
    if native is not None and report.kvm_hardware and native.availability().usable:
        return native
    qemu = QemuEngine(report=report)
    if not qemu.availability().usable:
        raise HostError(
            "no engine can run a guest here: qemu-system-x86_64 not found", hint="apt-get install qemu-system-x86"
        )
    return qemu
