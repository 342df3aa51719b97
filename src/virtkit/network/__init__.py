"""Virtual networks: NAT, isolated, bridged and direct (macvtap), from the kernel's bridge/TAP/macvtap,
nftables and dnsmasq. :class:`NetworkManager` is the entry point.

The manager (and pyroute2 with it, ~0.5 s to import) loads on first use, so the CLI can parse ``--network``
without paying for netlink.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from virtkit.network.args import NetworkArg, Publish, parse_network_arg, parse_publish, stable_mac, tap_name
from virtkit.network.spec import DhcpHost, NetworkSpec, PortForward, default_network

if TYPE_CHECKING:
    from virtkit.network.manager import Attachment, IfAddr, NetworkInfo, NetworkManager

_LAZY = {"Attachment", "IfAddr", "NetworkInfo", "NetworkManager"}

__all__ = [
    "Attachment",
    "DhcpHost",
    "IfAddr",
    "NetworkArg",
    "NetworkInfo",
    "NetworkManager",
    "NetworkSpec",
    "PortForward",
    "Publish",
    "default_network",
    "parse_network_arg",
    "parse_publish",
    "stable_mac",
    "tap_name",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from virtkit.network import manager

        return getattr(manager, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
