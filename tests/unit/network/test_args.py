from __future__ import annotations

import pytest

from virtkit.errors import ConfigError
from virtkit.network.args import (
    NetworkArg,
    Publish,
    macvtap_name,
    parse_network_arg,
    parse_publish,
    stable_mac,
    tap_name,
)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("default", NetworkArg("network", "default")),
        ("lab-1", NetworkArg("network", "lab-1")),
        ("bridge=br0", NetworkArg("bridge", "br0")),
        ("direct=eth0", NetworkArg("direct", "eth0", "bridge")),
        ("direct=enp3s0,mode=vepa", NetworkArg("direct", "enp3s0", "vepa")),
        ("direct=eth1,mode=passthrough", NetworkArg("direct", "eth1", "passthrough")),
        ("none", NetworkArg("none")),
    ],
)
def test_network_args(text: str, expected: NetworkArg) -> None:
    assert parse_network_arg(text) == expected


def test_direct_says_host_cannot_reach_guest() -> None:
    assert parse_network_arg("direct=eth0").note is not None
    assert "host" in str(parse_network_arg("direct=eth0").note)
    assert parse_network_arg("default").note is None


@pytest.mark.parametrize(
    "text,msg",
    [
        ("bridge=br 0", "not a valid interface name"),
        ("bridge=", "not a valid interface name"),
        ("direct=eth0,mode=loud", "unknown option 'mode=loud'"),
        ("direct=eth0,promisc", "unknown option 'promisc'"),
        ("direct=averyveryverylongnic", "not a valid interface name"),
        ("my net", "not a network name"),
        ("bridge=br0\nx", "not a valid interface name"),
    ],
)
def test_bad_network_args(text: str, msg: str) -> None:
    with pytest.raises(ConfigError, match=msg) as e:
        parse_network_arg(text)
    assert e.value.hint and "--network default" in e.value.hint


def test_publish() -> None:
    assert parse_publish("8080:80") == Publish(8080, 80, "tcp")
    assert parse_publish("5353:53/udp") == Publish(5353, 53, "udp")
    assert str(parse_publish("2222:22/tcp")) == "2222:22/tcp"
    for bad in ("8080", "0:80", "8080:70000", "a:b", "80:80/sctp", "1.2.3.4:80:80", "80:80 "):
        if bad == "80:80 ":
            assert parse_publish(bad) == Publish(80, 80)
            continue
        with pytest.raises(ConfigError, match="--publish"):
            parse_publish(bad)


def test_stable_mac_is_stable_unicast_and_local() -> None:
    a = stable_mac("web", 0)
    assert a == stable_mac("web", 0) and a.startswith("52:54:00:")
    assert len({stable_mac("web", i) for i in range(8)} | {stable_mac("db", 0)}) == 9


def test_device_names_fit_ifnamsiz_and_differ() -> None:
    long1, long2 = "a" * 63, "a" * 62 + "b"
    names = {tap_name(long1, 0), tap_name(long2, 0), tap_name(long1, 1), macvtap_name(long1, 0)}
    assert len(names) == 4 and all(len(n) <= 15 for n in names)
    assert tap_name("web.server_1", 3).startswith("vkwebse-") and tap_name("web.server_1", 3).endswith("-3")
    with pytest.raises(ConfigError):
        tap_name("x", 100)
