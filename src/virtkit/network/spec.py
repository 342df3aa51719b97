"""Network definitions: pure, frozen pydantic models; every value a user types is validated here.

Names end up in netlink requests, nftables JSON and dnsmasq's configuration file, so they are restricted to a
charset that cannot carry syntax into any of them (no spaces, quotes, commas, newlines, '=' or '#').
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NetworkMode = Literal["nat", "isolated", "bridge", "direct"]
MacvtapMode = Literal["bridge", "vepa", "private", "passthrough"]
Proto = Literal["tcp", "udp"]

NETWORK_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
# Linux allows almost anything in IFNAMSIZ-1 bytes; we allow what every tool quotes safely.
IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
DOMAIN_RE = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)
MAC_RE = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")


def check_ifname(v: str) -> str:
    """An interface name: 1-15 chars (IFNAMSIZ-1), letters, digits, '_', '.', '-', not '.' or '..'."""
    if not IFNAME_RE.fullmatch(v) or v in (".", ".."):
        raise ValueError(
            f"{v!r} is not a valid interface name: use 1-15 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return v


def check_mac(v: str) -> str:
    v = v.lower()
    if not MAC_RE.fullmatch(v):
        raise ValueError(f"{v!r} is not a MAC address like 52:54:00:12:34:56")
    if int(v[:2], 16) & 1:
        raise ValueError(f"{v!r} is a multicast MAC; use a unicast one such as 52:54:00:...")
    return v


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DhcpHost(_Frozen):
    """A static reservation: this MAC always gets this address (and this name in DNS)."""

    mac: str
    ip: ipaddress.IPv4Address
    hostname: str | None = None

    @field_validator("mac")
    @classmethod
    def _mac(cls, v: str) -> str:
        return check_mac(v)

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, v: str | None) -> str | None:
        if v is not None and not HOSTNAME_RE.fullmatch(v):
            raise ValueError(f"{v!r} is not a valid host name: use letters, digits and '-', at most 63")
        return v


class PortForward(_Frozen):
    """Connections to ``host_port`` on any of the host's own addresses go to ``guest_ip:guest_port``."""

    proto: Proto = "tcp"
    host_port: int = Field(ge=1, le=65535)
    guest_ip: ipaddress.IPv4Address
    guest_port: int = Field(ge=1, le=65535)


class NetworkSpec(_Frozen):
    """One virtual network.

    ``nat``/``isolated``: virtkit owns a bridge with ``subnet``'s first usable address, DHCP and DNS from dnsmasq;
    ``nat`` also masquerades to the outside and applies ``forwards``. ``bridge``: guests' TAPs join an existing host
    bridge (the outside network serves DHCP). ``direct``: guests get a macvtap on host NIC ``interface``.
    """

    name: str
    mode: NetworkMode = "nat"
    bridge: str | None = None
    interface: str | None = None
    macvtap_mode: MacvtapMode = "bridge"
    subnet: ipaddress.IPv4Interface | None = None
    dhcp_start: ipaddress.IPv4Address | None = None
    dhcp_end: ipaddress.IPv4Address | None = None
    hosts: tuple[DhcpHost, ...] = ()
    domain: str | None = None
    forwards: tuple[PortForward, ...] = ()
    autostart: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NETWORK_NAME_RE.fullmatch(v):
            raise ValueError(
                f"{v!r} is not a valid network name: use 1-32 letters, digits, '_' or '-', "
                "starting with a letter or digit"
            )
        return v

    @field_validator("bridge", "interface")
    @classmethod
    def _ifname(cls, v: str | None) -> str | None:
        return None if v is None else check_ifname(v)

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str | None) -> str | None:
        if v is not None and not DOMAIN_RE.fullmatch(v):
            raise ValueError(f"{v!r} is not a valid DNS domain: use labels of letters, digits and '-'")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> NetworkSpec:
        if self.mode in ("nat", "isolated"):
            self._check_routed()
        elif self.mode == "bridge":
            if not self.bridge:
                raise ValueError("a bridge network needs 'bridge': the existing host bridge, e.g. br0")
            self._no_l3("bridge")
        else:
            if not self.interface:
                raise ValueError("a direct network needs 'interface': the host NIC, e.g. eth0")
            self._no_l3("direct")
        return self

    def _no_l3(self, mode: str) -> None:
        extra = [f for f in ("subnet", "dhcp_start", "dhcp_end", "domain") if getattr(self, f) is not None]
        if self.hosts:
            extra.append("hosts")
        if self.forwards:
            extra.append("forwards")
        if mode == "direct" and self.bridge:
            extra.append("bridge")
        if mode == "bridge" and self.interface:
            extra.append("interface")
        if extra:
            raise ValueError(
                f"{', '.join(extra)} cannot be set on a {mode} network: the outside network serves addresses"
            )

    def _check_routed(self) -> None:
        if not self.bridge:
            raise ValueError(f"a {self.mode} network needs 'bridge': the name of the bridge virtkit creates")
        if self.interface:
            raise ValueError(f"'interface' is only for direct networks, not {self.mode}")
        if self.subnet is None:
            raise ValueError(f"a {self.mode} network needs 'subnet', e.g. 192.168.122.1/24")
        net = self.subnet.network
        if net.prefixlen > 30:
            raise ValueError(f"subnet {self.subnet} is too small: use a prefix of /30 or shorter")
        if self.subnet.ip in (net.network_address, net.broadcast_address):
            raise ValueError(f"subnet {self.subnet}: the bridge address must be a host address, e.g. {net[1]}")
        if not net.is_private:
            raise ValueError(f"subnet {self.subnet} is not a private range (use e.g. 192.168.x.1/24 or 10.x.y.1/24)")
        if (self.dhcp_start is None) != (self.dhcp_end is None):
            raise ValueError("set both dhcp_start and dhcp_end, or neither (no DHCP)")
        if self.dhcp_start is not None and self.dhcp_end is not None:
            for what, ip in (("dhcp_start", self.dhcp_start), ("dhcp_end", self.dhcp_end)):
                if ip not in net or ip in (net.network_address, net.broadcast_address):
                    raise ValueError(f"{what} {ip} is not a host address inside {net}")
            if int(self.dhcp_start) > int(self.dhcp_end):
                raise ValueError(f"dhcp_start {self.dhcp_start} is after dhcp_end {self.dhcp_end}")
        seen_mac: set[str] = set()
        seen_ip: set[ipaddress.IPv4Address] = set()
        for h in self.hosts:
            if h.ip not in net or h.ip in (net.network_address, net.broadcast_address, self.subnet.ip):
                raise ValueError(f"reservation {h.mac} -> {h.ip} is not a free host address inside {net}")
            if h.mac in seen_mac or h.ip in seen_ip:
                raise ValueError(f"reservation {h.mac} -> {h.ip} repeats a MAC or an address")
            seen_mac.add(h.mac)
            seen_ip.add(h.ip)
        if self.forwards and self.mode != "nat":
            raise ValueError("port forwards need a nat network")
        seen_fw: set[tuple[str, int]] = set()
        for f in self.forwards:
            if f.guest_ip not in net:
                raise ValueError(f"forward {f.host_port} -> {f.guest_ip}: the guest address is outside {net}")
            if (f.proto, f.host_port) in seen_fw:
                raise ValueError(f"host port {f.host_port}/{f.proto} is forwarded twice")
            seen_fw.add((f.proto, f.host_port))

    @property
    def routed(self) -> bool:
        """True when virtkit owns the bridge, addresses, DHCP and DNS (nat and isolated)."""
        return self.mode in ("nat", "isolated")


def default_network() -> NetworkSpec:
    """``default``: what libvirt ships, NAT on virbr0 with 192.168.122.0/24."""
    return NetworkSpec(
        name="default",
        mode="nat",
        bridge="virbr0",
        subnet=ipaddress.IPv4Interface("192.168.122.1/24"),
        dhcp_start=ipaddress.IPv4Address("192.168.122.2"),
        dhcp_end=ipaddress.IPv4Address("192.168.122.254"),
        autostart=True,
    )
