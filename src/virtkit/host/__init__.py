"""What this host offers: virtualization techniques, binaries, memory."""

from virtkit.host.probe import HostReport, Check, probe

__all__ = ["Check", "HostReport", "probe"]
