"""What users type for a VM's NICs: ``--network`` and ``--publish`` values, parsed into small frozen values."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

from virtkit.config import defaults
from virtkit.config.defaults import stable_mac as stable_mac  # re-exported: where the network layer looks
from virtkit.errors import ConfigError
from virtkit.network.spec import NETWORK_NAME_RE, check_ifname

MACVTAP_MODES = ("bridge", "vepa", "private", "passthrough")
DIRECT_NOTE = (
    "direct (macvtap) NICs cannot talk to the host they run on: the host NIC does not hand frames between its "
    "own stack and its macvtaps. Use a bridge network (bridge=BR) when host and guest must talk."
)


@dataclass(frozen=True)
class NetworkArg:
    kind: Literal["network", "bridge", "direct", "none"]
    name: str | None = None  # network name, bridge name or host interface
    mode: str = "bridge"  # macvtap mode for direct

    @property
    def note(self) -> str | None:
        """What the user must know about this choice (printed when they pick it)."""
        return DIRECT_NOTE if self.kind == "direct" else None


def parse_network_arg(text: str) -> NetworkArg:
    """``default`` | ``NAME`` | ``bridge=BR`` | ``direct=IFACE[,mode=M]`` | ``none``."""
    hint = "use --network default, --network NAME, --network bridge=br0, --network direct=eth0[,mode=vepa] or none"
    t = text.strip()
    try:
        if t == "none":
            return NetworkArg("none")
        if t.startswith("bridge="):
            return NetworkArg("bridge", check_ifname(t.removeprefix("bridge=")))
        if t.startswith("direct="):
            iface, *opts = t.removeprefix("direct=").split(",")
            mode = "bridge"
            for o in opts:
                key, _, val = o.partition("=")
                if key != "mode" or val not in MACVTAP_MODES:
                    raise ValueError(f"unknown option {o!r}: use mode={'|'.join(MACVTAP_MODES)}")
                mode = val
            return NetworkArg("direct", check_ifname(iface), mode)
        if NETWORK_NAME_RE.fullmatch(t):
            return NetworkArg("network", t)
        raise ValueError(f"{t!r} is not a network name")
    except ValueError as e:
        raise ConfigError(f"--network {text!r}: {e}", hint=hint) from None


@dataclass(frozen=True)
class Publish:
    host_port: int
    guest_port: int
    proto: Literal["tcp", "udp"] = "tcp"

    def __str__(self) -> str:
        return f"{self.host_port}:{self.guest_port}/{self.proto}"


_PUBLISH_RE = re.compile(r"^(\d{1,5}):(\d{1,5})(?:/(tcp|udp))?$")


def parse_publish(text: str) -> Publish:
    """``HOSTPORT:GUESTPORT[/tcp|udp]``."""
    m = _PUBLISH_RE.fullmatch(text.strip())
    hint = "use --publish HOSTPORT:GUESTPORT[/tcp|udp], e.g. --publish 8080:80"
    if not m:
        raise ConfigError(f"--publish {text!r} is not HOSTPORT:GUESTPORT[/tcp|udp]", hint=hint)
    hp, gp = int(m.group(1)), int(m.group(2))
    for p in (hp, gp):
        if not 1 <= p <= 65535:
            raise ConfigError(f"--publish {text!r}: port {p} is not in 1-65535", hint=hint)
    return Publish(hp, gp, "udp" if m.group(3) == "udp" else "tcp")


def _h(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def bridge_mac(network: str) -> str:
    h = _h(f"virtkit-bridge:{network}", 6)
    return f"{defaults.MAC_PREFIX}:{h[0:2]}:{h[2:4]}:{h[4:6]}"


def device_name(prefix: str, vm: str, index: int) -> str:
    """A 15-char interface name from the VM: readable start + hash (names can share a start) + NIC index."""
    if not 0 <= index <= 99:
        raise ConfigError(f"NIC index {index} is out of range", hint="a VM can have at most 100 NICs")
    base = re.sub(r"[^A-Za-z0-9]", "", vm)[:5]
    return check_ifname(f"{prefix}{base}-{_h(vm, 4)}-{index}")


def tap_name(vm: str, index: int) -> str:
    return device_name("vk", vm, index)


def macvtap_name(vm: str, index: int) -> str:
    return device_name("mv", vm, index)
