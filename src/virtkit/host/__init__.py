"""What this host offers: virtualization techniques, binaries, memory."""

from virtkit.host.probe import Check, HostReport, probe

__all__ = ["Check", "HostReport", "probe"]
