from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from virtkit.network.spec import IFNAME_RE, NetworkSpec, check_ifname, default_network


def nat(**kw: object) -> NetworkSpec:
    base: dict[str, object] = {
        "name": "n1",
        "mode": "nat",
        "bridge": "vkbr1",
        "subnet": "10.9.0.1/24",
        "dhcp_start": "10.9.0.10",
        "dhcp_end": "10.9.0.20",
    }
    return NetworkSpec.model_validate({**base, **kw})


def test_default_is_libvirts() -> None:
    d = default_network()
    assert (d.name, d.mode, d.bridge, str(d.subnet)) == ("default", "nat", "virbr0", "192.168.122.1/24")
    assert (str(d.dhcp_start), str(d.dhcp_end), d.autostart) == ("192.168.122.2", "192.168.122.254", True)


@pytest.mark.parametrize("name", ["eth0", "virbr0", "br-lan.10", "a", "x" * 15, "vk_1"])
def test_good_interface_names(name: str) -> None:
    assert check_ifname(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * 16,
        "br 0",
        'br"0',
        "br0;",
        "br0\n",
        "br0#",
        "-br",
        ".",
        "..",
        "br/0",
        "br,0",
        "br=0",
        "bré",
        "br0}",
    ],
)
def test_bad_interface_names(name: str) -> None:
    with pytest.raises(ValueError, match="not a valid interface name"):
        check_ifname(name)


@given(st.text(max_size=20))
def test_accepted_interface_names_carry_no_syntax(s: str) -> None:
    try:
        check_ifname(s)
    except ValueError:
        return
    assert 1 <= len(s) <= 15 and IFNAME_RE.fullmatch(s)
    assert not set(s) & set(" \t\n\r\"'#,;={}[]/\\$`")


@pytest.mark.parametrize(
    "field,value,msg",
    [
        ("name", "a b", "not a valid network name"),
        ("name", "x" * 33, "not a valid network name"),
        ("bridge", "virbr0\nserver=1.2.3.4", "not a valid interface name"),
        ("domain", "lan\naddress=/#/1.2.3.4", "not a valid DNS domain"),
        ("domain", "lan,x", "not a valid DNS domain"),
        ("subnet", "8.8.8.1/24", "not a private range"),
        ("subnet", "10.9.0.0/24", "must be a host address"),
        ("subnet", "10.9.0.1/31", "too small"),
        ("dhcp_start", "10.9.1.10", "not a host address inside 10.9.0.0/24"),
        ("dhcp_end", "10.9.0.5", "after dhcp_end"),
    ],
)
def test_bad_values_name_the_problem(field: str, value: str, msg: str) -> None:
    with pytest.raises(ValidationError, match=msg):
        nat(**{field: value})


def test_reservations_and_forwards() -> None:
    s = nat(
        hosts=[{"mac": "52:54:00:AA:BB:CC", "ip": "10.9.0.50", "hostname": "web"}],
        forwards=[{"host_port": 8080, "guest_ip": "10.9.0.50", "guest_port": 80}],
    )
    assert s.hosts[0].mac == "52:54:00:aa:bb:cc" and s.forwards[0].proto == "tcp"
    with pytest.raises(ValidationError, match="repeats a MAC"):
        nat(
            hosts=[
                {"mac": "52:54:00:00:00:01", "ip": "10.9.0.50"},
                {"mac": "52:54:00:00:00:01", "ip": "10.9.0.51"},
            ]
        )
    with pytest.raises(ValidationError, match="not a free host address"):
        nat(hosts=[{"mac": "52:54:00:00:00:01", "ip": "10.9.0.1"}])
    with pytest.raises(ValidationError, match="multicast"):
        nat(hosts=[{"mac": "01:00:5e:00:00:01", "ip": "10.9.0.50"}])
    with pytest.raises(ValidationError, match="not a valid host name"):
        nat(hosts=[{"mac": "52:54:00:00:00:01", "ip": "10.9.0.50", "hostname": "a,b"}])
    with pytest.raises(ValidationError, match="forwarded twice"):
        nat(
            forwards=[
                {"host_port": 80, "guest_ip": "10.9.0.5", "guest_port": 80},
                {"host_port": 80, "guest_ip": "10.9.0.6", "guest_port": 80},
            ]
        )
    with pytest.raises(ValidationError, match="port forwards need a nat network"):
        nat(mode="isolated", forwards=[{"host_port": 80, "guest_ip": "10.9.0.5", "guest_port": 80}])
    with pytest.raises(ValidationError, match="less than or equal to 65535"):
        nat(forwards=[{"host_port": 70000, "guest_ip": "10.9.0.5", "guest_port": 80}])


def test_modes_need_their_fields() -> None:
    with pytest.raises(ValidationError, match="needs 'subnet'"):
        NetworkSpec(name="x", mode="nat", bridge="br9")
    with pytest.raises(ValidationError, match="needs 'bridge'"):
        NetworkSpec(name="x", mode="bridge")
    with pytest.raises(ValidationError, match="needs 'interface'"):
        NetworkSpec(name="x", mode="direct")
    with pytest.raises(ValidationError, match="subnet cannot be set on a bridge network"):
        NetworkSpec.model_validate({"name": "x", "mode": "bridge", "bridge": "br0", "subnet": "10.1.0.1/24"})
    with pytest.raises(ValidationError, match="Input should be 'bridge', 'vepa', 'private' or 'passthrough'"):
        NetworkSpec.model_validate({"name": "x", "mode": "direct", "interface": "eth0", "macvtap_mode": "x"})
    with pytest.raises(ValidationError, match="Extra inputs"):
        NetworkSpec.model_validate({"name": "x", "mode": "bridge", "bridge": "br0", "bogus": 1})
