"""Links, addresses and routes over netlink (pyroute2): bridges, persistent TAPs, macvtaps.

Every function takes an open ``IPRoute`` bound to the namespace the network lives in and is idempotent: adding
what exists or deleting what is gone is not an error, so start/stop can be repeated and resumed.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from virtkit.errors import HostError


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    kind: str | None
    master: int | None
    up: bool
    mac: str | None


def _attr(msg: Any, name: str) -> Any:
    return msg.get_attr(name)


def _kind(msg: Any) -> str | None:
    info = _attr(msg, "IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def _to_link(msg: Any) -> Link:
    return Link(
        msg["index"],
        _attr(msg, "IFLA_IFNAME"),
        _kind(msg),
        _attr(msg, "IFLA_MASTER"),
        bool(msg["flags"] & 1),
        _attr(msg, "IFLA_ADDRESS"),
    )


def links(ipr: IPRoute) -> list[Link]:
    return [_to_link(m) for m in ipr.get_links()]


def get(ipr: IPRoute, name: str) -> Link | None:
    try:
        idx = ipr.link_lookup(ifname=name)
    except NetlinkError:
        return None
    if not idx:
        return None
    try:
        return _to_link(ipr.get_links(idx[0])[0])
    except NetlinkError:
        return None


def require(ipr: IPRoute, name: str, what: str) -> Link:
    link = get(ipr, name)
    if link is None:
        raise HostError(
            f"{what} {name!r} does not exist on this host",
            hint=f"create it first or pick an existing one ({', '.join(sorted(names(ipr)))})",
        )
    return link


def names(ipr: IPRoute) -> set[str]:
    return {lk.name for lk in links(ipr)}


def _up(ipr: IPRoute, index: int) -> None:
    ipr.link("set", index=index, state="up")


def ensure_bridge(ipr: IPRoute, name: str, mac: str) -> Link:
    link = get(ipr, name)
    if link is None:
        try:
            # A fixed MAC: a bridge otherwise takes its lowest port's MAC, and guests' ARP caches go stale.
            ipr.link("add", ifname=name, kind="bridge", address=mac, br_stp_state=0, br_forward_delay=0)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise HostError(f"cannot create bridge {name!r}: {e}") from e
        link = require(ipr, name, "bridge")
    elif link.kind != "bridge":
        raise HostError(
            f"{name!r} exists and is a {link.kind or 'plain'} link, not a bridge",
            hint="pick another bridge name for the network",
        )
    _up(ipr, link.index)
    return link


def ensure_address(ipr: IPRoute, index: int, addr: ipaddress.IPv4Interface) -> None:
    have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(family=socket.AF_INET, index=index)}
    if (str(addr.ip), addr.network.prefixlen) in have:
        return
    ipr.addr(
        "add",
        index=index,
        address=str(addr.ip),
        prefixlen=addr.network.prefixlen,
        broadcast=str(addr.network.broadcast_address),
    )


def delete(ipr: IPRoute, name: str) -> bool:
    """Delete a link by name; False when it was already gone."""
    link = get(ipr, name)
    if link is None:
        return False
    try:
        ipr.link("del", index=link.index)
    except NetlinkError as e:
        if e.code not in (errno.ENODEV, errno.ENOENT):
            raise
        return False
    return True


def create_tap(ipr: IPRoute, name: str, master: int | None) -> Link:
    """A persistent TAP (QEMU opens it by name with ``script=no``), up and enslaved to ``master``."""
    link = get(ipr, name)
    if link is not None and link.kind != "tun":
        raise HostError(f"{name!r} exists and is not a TAP device", hint="stop whatever created it")
    if link is None:
        try:
            ipr.link("add", ifname=name, kind="tuntap", mode="tap")
        except NetlinkError as e:
            raise HostError(f"cannot create TAP {name!r}: {e}", hint="is /dev/net/tun there?") from e
        link = require(ipr, name, "TAP")
    if master is not None and link.master != master:
        ipr.link("set", index=link.index, master=master)
    _up(ipr, link.index)
    return require(ipr, name, "TAP")


# MACVLAN_MODE_* from if_link.h (pyroute2 has no name for passthrough).
MACVTAP_MODES = {"private": 1, "vepa": 2, "bridge": 4, "passthrough": 8}


def create_macvtap(ipr: IPRoute, name: str, parent: str, mode: str, mac: str) -> Link:
    lower = require(ipr, parent, "host interface")
    link = get(ipr, name)
    if link is not None and link.kind != "macvtap":
        raise HostError(f"{name!r} exists and is not a macvtap device", hint="stop whatever created it")
    if link is None:
        try:
            ipr.link(
                "add",
                ifname=name,
                kind="macvtap",
                link=lower.index,
                macvtap_mode=MACVTAP_MODES[mode],
                address=mac,
            )
        except NetlinkError as e:
            hint = "passthrough takes the whole NIC: only one guest can use it" if mode == "passthrough" else None
            raise HostError(f"cannot create macvtap {name!r} on {parent!r}: {e}", hint=hint) from e
        link = require(ipr, name, "macvtap")
    _up(ipr, link.index)
    if not lower.up:
        _up(ipr, lower.index)
    return link


@dataclass(frozen=True)
class Route:
    dst: ipaddress.IPv4Network
    oif: int | None


def routes(ipr: IPRoute) -> list[Route]:
    """IPv4 routes with a destination prefix (the default route says nothing about overlaps)."""
    out = []
    for r in ipr.get_routes(family=socket.AF_INET, table=254):
        if not r["dst_len"]:
            continue
        dst = r.get_attr("RTA_DST")
        if dst is None:
            continue
        out.append(Route(ipaddress.IPv4Network(f"{dst}/{r['dst_len']}", strict=False), r.get_attr("RTA_OIF")))
    return out


def overlapping(subnet: ipaddress.IPv4Network, existing: list[Route], own_index: int | None) -> Route | None:
    for r in existing:
        if own_index is not None and r.oif == own_index:
            continue
        if r.dst.overlaps(subnet):
            return r
    return None


def neighbours(ipr: IPRoute) -> dict[str, ipaddress.IPv4Address]:
    """MAC -> IPv4 address from the ARP table (how domifaddr finds guests on bridge networks)."""
    out: dict[str, ipaddress.IPv4Address] = {}
    for n in ipr.get_neighbours(family=socket.AF_INET):
        mac, dst = n.get_attr("NDA_LLADDR"), n.get_attr("NDA_DST")
        if mac and dst and n["state"] not in (0x20, 0x01):  # not FAILED, not INCOMPLETE
            out[mac.lower()] = ipaddress.IPv4Address(dst)
    return out
