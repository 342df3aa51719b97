"""``virtkit net-*`` and ``domifaddr``: virsh's network verbs.

:func:`register` adds the commands to the top-level app (``virtkit net-list``, not ``virtkit net list``, like
virsh). ``parse_network_arg`` and ``parse_publish`` are what ``virtkit run/launch`` call for ``--network`` and
``--publish``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from virtkit.network.args import DIRECT_NOTE, NetworkArg, Publish, parse_network_arg, parse_publish

if TYPE_CHECKING:
    from virtkit.network.manager import NetworkManager

__all__ = ["DIRECT_NOTE", "NetworkArg", "Publish", "parse_network_arg", "parse_publish", "register"]

out = Console()
err = Console(stderr=True, soft_wrap=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
NameArg = Annotated[str, typer.Argument(help="Network name.")]


def manager() -> NetworkManager:
    from virtkit.network.manager import NetworkManager  # netlink only for commands that need it

    return NetworkManager()


def _print_json(data: Any) -> None:
    out.print_json(json.dumps(data))


def _table(*cols: str) -> Table:
    t = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for c in cols:
        t.add_column(c)
    return t


def net_list(
    all_: Annotated[bool, typer.Option("--all", help="Also inactive networks.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """List networks (active ones; --all for every defined one)."""
    infos = manager().list(all=all_)
    if json_out:
        _print_json([i.to_json() for i in infos])
        return
    t = _table("Name", "State", "Autostart", "Mode", "Device", "Subnet")
    for i in infos:
        t.add_row(
            i.name,
            i.state,
            "yes" if i.autostart else "no",
            i.mode,
            i.bridge or i.interface or "-",
            i.subnet or "-",
        )
    out.print(t)


def net_define(file: Annotated[Path, typer.Argument(help="Network definition (JSON).")]) -> None:
    """Define (or redefine) a network from a JSON file; it starts with net-start."""
    spec = manager().define_file(file)
    out.print(f"Network {spec.name} defined from {file}", highlight=False)
    if spec.mode == "direct":
        err.print(f"note: {DIRECT_NOTE}", highlight=False)


def net_start(name: NameArg) -> None:
    """Start a network (idempotent: also repairs a half-started one)."""
    info = manager().start(name)
    out.print(f"Network {name} started", highlight=False)
    if info.note:
        err.print(f"note: {info.note}", highlight=False)


def net_stop(name: NameArg) -> None:
    """Stop a network and remove everything it put on the host (virsh net-destroy)."""
    manager().stop(name)
    out.print(f"Network {name} stopped", highlight=False)


def net_undefine(name: NameArg) -> None:
    """Forget an inactive network's definition."""
    manager().undefine(name)
    out.print(f"Network {name} has been undefined", highlight=False)


def net_autostart(
    name: NameArg,
    disable: Annotated[bool, typer.Option("--disable", help="Do not start it with virtkit.")] = False,
) -> None:
    """Mark a network to start when virtkit's daemon starts."""
    manager().set_autostart(name, not disable)
    out.print(f"Network {name} {'unmarked' if disable else 'marked'} as autostarted", highlight=False)


def net_info(name: NameArg, json_out: JsonOpt = False) -> None:
    """Show a network's definition and what is running for it."""
    i = manager().info(name)
    if json_out:
        _print_json(i.to_json())
        return
    rows = [
        ("Name", i.name),
        ("State", i.state),
        ("Autostart", "yes" if i.autostart else "no"),
        ("Mode", i.mode),
        ("Bridge", i.bridge),
        ("Interface", i.interface),
        ("Subnet", i.subnet),
        ("DHCP range", i.dhcp_range),
        ("Domain", i.domain),
        ("Forwards", ", ".join(i.forwards) or None),
        ("dnsmasq pid", i.dnsmasq_pid),
        ("Parts", ", ".join(f"{k}={'up' if v else 'missing'}" for k, v in i.parts.items()) or None),
    ]
    for k, v in rows:
        if v is not None:
            out.print(f"{k + ':':<13}{v}", highlight=False)
    if i.note:
        out.print(f"{'Note:':<13}{i.note}", highlight=False)


def net_dhcp_leases(name: NameArg, json_out: JsonOpt = False) -> None:
    """DHCP leases handed out by a nat or isolated network."""
    leases = manager().leases(name)
    if json_out:
        _print_json(
            [
                {
                    "expiry": le.expiry,
                    "mac": le.mac,
                    "ip": str(le.ip),
                    "hostname": le.hostname,
                    "client_id": le.client_id,
                }
                for le in leases
            ]
        )
        return
    t = _table("Expiry", "MAC", "IP address", "Hostname", "Client ID")
    for le in leases:
        when = dt.datetime.fromtimestamp(le.expiry).strftime("%Y-%m-%d %H:%M:%S") if le.expiry else "never"
        t.add_row(when, le.mac, str(le.ip), le.hostname or "-", le.client_id or "-")
    out.print(t)


def domifaddr(vm: Annotated[str, typer.Argument(help="VM name.")], json_out: JsonOpt = False) -> None:
    """A VM's interface addresses (DHCP leases, reservations, the host's ARP table)."""
    addrs = manager().domifaddr(vm)
    if json_out:
        _print_json([a.__dict__ for a in addrs])
        return
    t = _table("Name", "MAC address", "Protocol", "Address", "Source")
    for a in addrs:
        addr = f"{a.ip}/{a.prefix}" if a.ip and a.prefix else a.ip or "-"
        t.add_row(a.ifname, a.mac, "ipv4" if a.ip else "-", addr, a.source or "-")
    out.print(t)


COMMANDS: dict[str, Callable[..., None]] = {
    "net-list": net_list,
    "net-define": net_define,
    "net-start": net_start,
    "net-stop": net_stop,
    "net-destroy": net_stop,
    "net-undefine": net_undefine,
    "net-autostart": net_autostart,
    "net-info": net_info,
    "net-dhcp-leases": net_dhcp_leases,
    "domifaddr": domifaddr,
}


def register(app: typer.Typer) -> None:
    """Add the network commands to ``app`` at top level (``virtkit net-list`` ...)."""
    for name, fn in COMMANDS.items():
        app.command(name, hidden=name == "net-destroy")(fn)
