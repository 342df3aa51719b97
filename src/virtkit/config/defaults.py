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
