"""Virtual networks: NAT, isolated, bridged and direct (macvtap), from the kernel's bridge/TAP/macvtap,
nftables and dnsmasq. :class:`NetworkManager` is the entry point."""

from virtkit.network.args import NetworkArg, Publish, parse_network_arg, parse_publish, stable_mac, tap_name
from virtkit.network.manager import Attachment, IfAddr, NetworkInfo, NetworkManager
from virtkit.network.spec import DhcpHost, NetworkSpec, PortForward, default_network

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
