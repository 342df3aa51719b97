"""Policy in one place: the numbers a machine gets when its spec says nothing."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_IMAGE = "tiny"
DEFAULT_MEMORY_MIB = 256
DEFAULT_VCPUS = 1
DEFAULT_CMDLINE = "console=ttyS0 quiet panic=-1"
# Locally-administered prefix QEMU and libvirt use for guest MACs.
MAC_PREFIX = "52:54:00"
AGENT_PORT_NAME = "org.qemu.guest_agent.0"
SHUTDOWN_TIMEOUT_S = 30.0
# an engine's own process is up and answers its control socket (the guest may still be booting)
START_TIMEOUT_S = 60.0
# the guest has booted and its agent answers
READY_TIMEOUT_S = 120.0


def state_dir() -> Path:
    """Where virtkit keeps images, machines and run files (``VIRTKIT_HOME`` overrides)."""
    env = os.environ.get("VIRTKIT_HOME")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/virtkit")
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "virtkit"


def image_dir() -> Path:
    return state_dir() / "images"


def run_dir() -> Path:
    return state_dir() / "run"


def stable_mac(vm: str, index: int) -> str:
    """The MAC of ``vm``'s NIC ``index`` when its spec names none: the same every boot, whoever plugs the NIC
    in (the QEMU engine, the network layer), with the locally-administered 52:54:00 prefix as libvirt does."""
    import hashlib

    h = hashlib.sha256(f"{vm}/{index}".encode()).hexdigest()
    return f"{MAC_PREFIX}:{h[0:2]}:{h[2:4]}:{h[4:6]}"
