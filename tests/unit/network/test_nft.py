from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

import pytest

from virtkit.network.nft import delete_table, ruleset, table_name
from virtkit.network.spec import NetworkSpec, PortForward, default_network

GOLDEN = Path(__file__).parent / "golden"


def check(name: str, cmds: object) -> None:
    path = GOLDEN / f"{name}.json"
    text = json.dumps({"nftables": cmds}, indent=1, sort_keys=True) + "\n"
    if os.environ.get("VIRTKIT_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{path} differs; review and rerun with VIRTKIT_UPDATE_GOLDEN=1"


def test_default_nat_golden() -> None:
    check("nft-default", ruleset(default_network()))


def test_nat_with_forwards_golden() -> None:
    spec = default_network().model_copy(
        update={
            "forwards": (PortForward(host_port=2222, guest_ip=ipaddress.IPv4Address("192.168.122.10"), guest_port=22),)
        }
    )
    extra = [PortForward(proto="udp", host_port=5353, guest_ip=ipaddress.IPv4Address("192.168.122.11"), guest_port=53)]
    check("nft-forwards", ruleset(spec, extra))


def test_isolated_golden() -> None:
    spec = NetworkSpec.model_validate({"name": "iso", "mode": "isolated", "bridge": "vkiso0", "subnet": "10.77.0.1/24"})
    cmds = ruleset(spec)
    check("nft-isolated", cmds)
    assert not any("masquerade" in json.dumps(c) for c in cmds)


def test_replace_is_one_atomic_batch_and_delete_is_idempotent() -> None:
    cmds = ruleset(default_network())
    t = {"family": "ip", "name": "virtkit-default"}
    assert cmds[:3] == [{"add": {"table": t}}, {"delete": {"table": t}}, {"add": {"table": t}}]
    assert delete_table("default") == [{"add": {"table": t}}, {"delete": {"table": t}}]
    assert table_name("lab_1") == "virtkit-lab_1"


def test_bridge_networks_have_no_rules() -> None:
    with pytest.raises(ValueError, match="has no nftables rules"):
        ruleset(NetworkSpec(name="lan", mode="bridge", bridge="br0"))
