"""nftables rules for one network, as libnftables JSON, loaded with ``nft -j -f -``.

Each network owns one table ``ip virtkit-<name>``; replacing it is one atomic transaction (add, delete, add), so
a restart or a change of forwards never leaves a half-written ruleset, and stopping deletes exactly that table.
Values only ever enter as JSON strings and numbers, so nothing a user types can become nft syntax.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

from virtkit.errors import HostError
from virtkit.network.spec import NetworkSpec, PortForward

FAMILY = "ip"
Json = dict[str, Any]


def table_name(network: str) -> str:
    return f"virtkit-{network}"


def _meta(key: str, value: str, op: str = "==") -> Json:
    return {"match": {"op": op, "left": {"meta": {"key": key}}, "right": value}}


def _addr(field: str, net: str, op: str = "==") -> Json:
    addr, _, plen = net.partition("/")
    right: Any = {"prefix": {"addr": addr, "len": int(plen)}} if plen and plen != "32" else addr
    return {"match": {"op": op, "left": {"payload": {"protocol": "ip", "field": field}}, "right": right}}


def _ct(key: str, value: Any) -> Json:
    return {"match": {"op": "in", "left": {"ct": {"key": key}}, "right": value}}


def _dport(proto: str, port: int) -> Json:
    return {"match": {"op": "==", "left": {"payload": {"protocol": proto, "field": "dport"}}, "right": port}}


_LOCAL = {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}}
_ACCEPT: Json = {"accept": None}
_REJECT: Json = {"reject": {"type": "icmp", "expr": "port-unreachable"}}


def _dnat(f: PortForward) -> Json:
    return {"dnat": {"addr": str(f.guest_ip), "port": f.guest_port}}


def ruleset(spec: NetworkSpec, extra_forwards: Sequence[PortForward] = ()) -> list[Json]:
    """The commands that (re)create this network's table; ``extra_forwards`` come from running VMs' --publish."""
    if not spec.routed or spec.subnet is None or spec.bridge is None:
        raise ValueError(f"network {spec.name!r} ({spec.mode}) has no nftables rules")
    table = table_name(spec.name)
    br = spec.bridge
    net = str(spec.subnet.network)
    cmds: list[Json] = [
        {"add": {"table": {"family": FAMILY, "name": table}}},
        {"delete": {"table": {"family": FAMILY, "name": table}}},
        {"add": {"table": {"family": FAMILY, "name": table}}},
    ]

    def chain(name: str, type_: str, hook: str, prio: int) -> None:
        cmds.append(
            {
                "add": {
                    "chain": {
                        "family": FAMILY,
                        "table": table,
                        "name": name,
                        "type": type_,
                        "hook": hook,
                        "prio": prio,
                        "policy": "accept",
                    }
                }
            }
        )

    def rule(chain_name: str, *expr: Json) -> None:
        cmds.append({"add": {"rule": {"family": FAMILY, "table": table, "chain": chain_name, "expr": list(expr)}}})

    chain("forward", "filter", "forward", 0)
    # Guests on the same bridge always reach each other (routed between bridge ports only with br_netfilter).
    rule("forward", _meta("iifname", br), _meta("oifname", br), _ACCEPT)
    if spec.mode == "nat":
        rule(
            "forward",
            _meta("oifname", br),
            _addr("daddr", net),
            _ct("state", ["established", "related"]),
            _ACCEPT,
        )
        rule("forward", _meta("oifname", br), _ct("status", "dnat"), _ACCEPT)
        rule("forward", _meta("iifname", br), _addr("saddr", net), _ACCEPT)
    rule("forward", _meta("iifname", br), _REJECT)
    rule("forward", _meta("oifname", br), _REJECT)

    if spec.mode == "nat":
        forwards = [*spec.forwards, *extra_forwards]
        chain("postrouting", "nat", "postrouting", 100)
        # Like libvirt: multicast and broadcast from guests are never masqueraded.
        rule("postrouting", _addr("saddr", net), _addr("daddr", "224.0.0.0/24"), {"return": None})
        rule("postrouting", _addr("saddr", net), _addr("daddr", "255.255.255.255/32"), {"return": None})
        rule("postrouting", _addr("saddr", net), _addr("daddr", net, "!="), {"masquerade": None})
        # The host reaching a forward through 127.0.0.1 (route_localnet is on for the bridge).
        rule("postrouting", _meta("oifname", br), _addr("saddr", "127.0.0.0/8"), {"masquerade": None})
        if forwards:
            chain("prerouting", "nat", "prerouting", -100)
            chain("output", "nat", "output", -100)
            for f in forwards:
                rule("prerouting", _meta("iifname", br, "!="), _LOCAL, _dport(f.proto, f.host_port), _dnat(f))
                rule("output", _LOCAL, _dport(f.proto, f.host_port), _dnat(f))
    return cmds


def delete_table(network: str) -> list[Json]:
    """Idempotent delete: adding first makes the delete succeed when the table is already gone."""
    t = {"family": FAMILY, "name": table_name(network)}
    return [{"add": {"table": dict(t)}}, {"delete": {"table": dict(t)}}]


Runner = Callable[[list[str], str | None], str]


class Nft:
    """Runs ``nft -j`` inside a network namespace (``preexec`` enters it in the child)."""

    def __init__(self, preexec: Callable[[], None] | None = None, binary: str = "nft") -> None:
        self._preexec = preexec
        self._binary = binary

    def _run(self, args: list[str], stdin: str | None = None) -> str:
        try:
            p = subprocess.run(
                [self._binary, "-j", *args],
                input=stdin,
                capture_output=True,
                text=True,
                preexec_fn=self._preexec,
                timeout=30,
                check=False,
            )
        except FileNotFoundError as e:
            raise HostError("nft is not installed", hint="apt-get install nftables") from e
        if p.returncode != 0:
            raise HostError(
                f"nft failed: {p.stderr.strip() or p.stdout.strip()}",
                hint="check that the kernel has nf_tables and that virtkit runs as root",
            )
        return p.stdout

    def apply(self, cmds: list[Json]) -> None:
        self._run(["-f", "-"], json.dumps({"nftables": cmds}))

    def tables(self) -> list[str]:
        out = self._run(["list", "tables"])
        items = json.loads(out).get("nftables", []) if out.strip() else []
        return [i["table"]["name"] for i in items if "table" in i and i["table"].get("family") == FAMILY]

    def has_table(self, network: str) -> bool:
        return table_name(network) in self.tables()

    def list_table(self, network: str) -> list[Json]:
        out = self._run(["list", "table", FAMILY, table_name(network)])
        return list(json.loads(out).get("nftables", []))
