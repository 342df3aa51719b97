"""Engines: the lifecycle interface and its implementations (QEMU over QMP; the native VMM)."""

from virtkit.engines.base import Availability, Engine, Machine, Technique, VmState

__all__ = ["Availability", "Engine", "Machine", "Technique", "VmState"]
