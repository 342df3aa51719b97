from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from virtkit.errors import ConfigError
from virtkit.network.links import Route, overlapping
from virtkit.network.manager import NetworkManager
from virtkit.network.spec import NetworkSpec
from virtkit.network.store import NetworkStore


def test_default_is_created_once(tmp_path: Path) -> None:
    s = NetworkStore(tmp_path / "networks")
    assert s.names() == ["default"] and s.load("default").bridge == "virbr0"
    s.delete("default")
    assert NetworkStore(tmp_path / "networks").names() == []  # undefining default sticks


def test_load_errors_name_the_file_and_field(tmp_path: Path) -> None:
    s = NetworkStore(tmp_path)
    with pytest.raises(ConfigError, match="network 'nope' is not defined"):
        s.load("nope")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match=r"bad\.json: not valid JSON"):
        s.load("bad")
    (tmp_path / "bad.json").write_text(json.dumps({"name": "bad", "mode": "nat", "bridge": "b 1"}))
    with pytest.raises(ConfigError, match=r"bad.json: bridge: 'b 1' is not a valid interface name"):
        s.load("bad")


def test_define_refuses_overlaps_and_shared_bridges(tmp_path: Path) -> None:
    m = NetworkManager(state_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"overlaps network 'default' \(192.168.122.0/24\)"):
        m.define(NetworkSpec.model_validate({"name": "n2", "bridge": "vk2", "subnet": "192.168.0.1/16"}))
    with pytest.raises(ConfigError, match="bridge 'virbr0' already belongs to network 'default'"):
        m.define(NetworkSpec.model_validate({"name": "n2", "bridge": "virbr0", "subnet": "10.5.0.1/24"}))
    m.define(NetworkSpec.model_validate({"name": "n2", "bridge": "vk2", "subnet": "10.5.0.1/24"}))
    # Redefining a network with itself is an update, not an overlap.
    m.define(NetworkSpec.model_validate({"name": "n2", "bridge": "vk2", "subnet": "10.5.0.1/24", "domain": "lab"}))
    assert m.store.load("n2").domain == "lab"


def test_define_file_errors(tmp_path: Path) -> None:
    m = NetworkManager(state_dir=tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        m.define_file(tmp_path / "missing.json")
    f = tmp_path / "n.json"
    f.write_text(json.dumps({"name": "n", "mode": "isolated", "bridge": "vkn", "subnet": "8.8.8.1/24"}))
    with pytest.raises(ConfigError, match=r"n\.json: subnet 8\.8\.8\.1/24 is not a private range"):
        m.define_file(f)


def routes(*spec: tuple[str, int | None]) -> list[Route]:
    return [Route(ipaddress.IPv4Network(d), oif) for d, oif in spec]


def test_overlap_detection() -> None:
    net = ipaddress.IPv4Network("192.168.122.0/24")
    assert overlapping(net, routes(("10.0.0.0/8", 2)), None) is None
    hit = overlapping(net, routes(("10.0.0.0/8", 2), ("192.168.0.0/16", 3)), None)
    assert hit is not None and str(hit.dst) == "192.168.0.0/16"
    assert overlapping(net, routes(("192.168.122.128/25", 4)), None) is not None
    # Our own bridge's route (a restart of a running network) is not a clash.
    assert overlapping(net, routes(("192.168.122.0/24", 7)), own_index=7) is None


def test_domifaddr_from_leases_reservations_and_agent(tmp_path: Path) -> None:
    from virtkit.network.manager import Attachment

    m = NetworkManager(state_dir=tmp_path)
    nics = [
        Attachment("vm", 0, "tap", "vkvm-0", "52:54:00:00:00:01", "default", "virbr0"),
        Attachment("vm", 1, "tap", "vkvm-1", "52:54:00:00:00:02", "default", "virbr0", reserved_ip="192.168.122.9"),
        Attachment("vm", 2, "tap", "vkvm-2", "52:54:00:00:00:03", None, "br0"),
    ]
    m._save_attachments("vm", nics)
    run = tmp_path / "run" / "net" / "default"
    run.mkdir(parents=True)
    (run / "dnsmasq.leases").write_text("0 52:54:00:00:00:01 192.168.122.50 vm *\n")
    agent = [
        {
            "name": "lo",
            "hardware-address": "00:00:00:00:00:00",
            "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8}],
        },
        {
            "name": "eth2",
            "hardware-address": "52:54:00:00:00:03",
            "ip-addresses": [
                {"ip-address-type": "ipv6", "ip-address": "fe80::1", "prefix": 64},
                {"ip-address-type": "ipv4", "ip-address": "203.0.113.120", "prefix": 24},
            ],
        },
        {"name": "junk", "hardware-address": "52:54:00:00:00:09", "ip-addresses": [{"ip-address": "x"}]},
    ]
    got = [(a.ifname, a.ip, a.prefix, a.source) for a in m.domifaddr("vm", agent)]
    assert got == [
        ("vkvm-0", "192.168.122.50", 24, "lease"),
        ("vkvm-1", "192.168.122.9", 24, "reservation"),
        ("vkvm-2", "203.0.113.120", 24, "agent"),
    ]
