"""``virtkit net-*``: virsh's network verbs, over virtkitd's API (the daemon owns the network layer).

:func:`register` adds them to the top-level app (``virtkit net-list``, not ``virtkit net list``, like virsh).
A VM's addresses are ``virtkit domifaddr`` (:mod:`virtkit.cli.vm`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from virtkit.cli import output
from virtkit.cli.remote import api

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None)
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output (the API's own).")]
NameArg = Annotated[str, typer.Argument(metavar="NETWORK", help="Network name.")]


@app.command("net-list")
def net_list(
    all_: Annotated[bool, typer.Option("--all", help="Also inactive networks.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """List networks (active ones; --all for every defined one)."""
    with api() as c:
        nets = c.networks(all=all_)
    if json_out:
        output.print_json(nets)
        return
    output.table(
        ["Name", "State", "Autostart", "Mode", "Device", "Subnet"],
        [
            [
                n["name"],
                n["state"],
                "yes" if n["autostart"] else "no",
                n["mode"],
                n["bridge"] or n["interface"],
                n["subnet"],
            ]
            for n in nets
        ],
    )


@app.command("net-define")
def net_define(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Network definition: .json, .toml or .yaml.")],
    json_out: JsonOpt = False,
) -> None:
    """Define (or redefine) a network from a file; it starts with net-start."""
    from virtkit.daemon.domain import read_mapping
    from virtkit.network.args import DIRECT_NOTE

    with api() as c:
        spec = c.network_define(read_mapping(file))
    if json_out:
        output.print_json(spec)
    else:
        output.line(f"Network {spec['name']} defined from {file}")
    if spec.get("mode") == "direct":
        output.note(f"note: {DIRECT_NOTE}")


@app.command("net-start")
def net_start(name: NameArg, json_out: JsonOpt = False) -> None:
    """Start a network (idempotent: also repairs a half-started one)."""
    with api() as c:
        info = c.network_start(name)
    if json_out:
        output.print_json(info)
    else:
        output.line(f"Network {name} started")
    if info.get("note"):
        output.note(f"note: {info['note']}")


@app.command("net-stop")
def net_stop(name: NameArg, json_out: JsonOpt = False) -> None:
    """Stop a network and remove everything it put on the host (virsh's net-destroy, which also works)."""
    with api() as c:
        info = c.network_destroy(name)
    if json_out:
        output.print_json(info)
    else:
        output.line(f"Network {name} stopped")


app.command("net-destroy", hidden=True)(net_stop)


@app.command("net-undefine")
def net_undefine(name: NameArg) -> None:
    """Forget an inactive network's definition."""
    with api() as c:
        c.network_undefine(name)
    output.line(f"Network {name} has been undefined")


@app.command("net-autostart")
def net_autostart(
    name: NameArg,
    disable: Annotated[bool, typer.Option("--disable", help="Do not start it with virtkitd.")] = False,
) -> None:
    """Mark a network to start when virtkitd starts."""
    with api() as c:
        c.network_set_autostart(name, not disable)
    output.line(f"Network {name} {'unmarked' if disable else 'marked'} as autostarted")


@app.command("net-info")
def net_info(name: NameArg, json_out: JsonOpt = False) -> None:
    """Show a network's definition and what is running for it."""
    with api() as c:
        i = c.network_info(name)
    if json_out:
        output.print_json(i)
        return
    parts = i.get("parts") or {}
    output.kv(
        [
            ("Name", i["name"]),
            ("State", i["state"]),
            ("Autostart", "yes" if i["autostart"] else "no"),
            ("Mode", i["mode"]),
            ("Bridge", i.get("bridge")),
            ("Interface", i.get("interface")),
            ("Subnet", i.get("subnet")),
            ("DHCP range", i.get("dhcp_range")),
            ("Domain", i.get("domain")),
            ("Forwards", ", ".join(i.get("forwards") or []) or None),
            ("dnsmasq pid", i.get("dnsmasq_pid")),
            ("Parts", ", ".join(f"{k}={'up' if v else 'missing'}" for k, v in parts.items()) or None),
            ("Note", i.get("note")),
        ],
        skip_none=True,
    )


@app.command("net-dhcp-leases")
def net_dhcp_leases(name: NameArg, json_out: JsonOpt = False) -> None:
    """DHCP leases handed out by a nat or isolated network."""
    with api() as c:
        leases = c.network_leases(name)
    if json_out:
        output.print_json(leases)
        return

    def when(expiry: int | None) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(expiry)) if expiry else "never"

    output.table(
        ["Expiry", "MAC", "IP address", "Hostname", "Client ID"],
        [[when(x.get("expiry")), x["mac"], x["ip"], x.get("hostname"), x.get("client_id")] for x in leases],
    )


def register(parent: typer.Typer) -> None:
    """Add the network commands to ``parent`` at top level (``virtkit net-list`` ...)."""
    parent.registered_commands.extend(app.registered_commands)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
