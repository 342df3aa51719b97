"""isolated, bridge and direct (macvtap) networks with fake guests behind real TAP/macvtap devices."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from tests.network.conftest import HOST_IP, OUT_IP, Namespaces, build_world, plug
from virtkit.errors import ConfigError, HostError
from virtkit.network import NetworkSpec
from virtkit.network.args import DIRECT_NOTE, parse_network_arg, stable_mac

pytestmark = pytest.mark.network
OUTSIDE = ipaddress.ip_network("203.0.113.0/24")


def _stop_guests(nss: Namespaces) -> None:
    for p in nss.procs:
        if "fakeguest.py" in " ".join(p.args):  # type: ignore[arg-type]
            p.terminate()
            p.wait(5)


def test_isolated_guests_and_host_only(nss: Namespaces, tmp_path: Path) -> None:
    w = build_world(nss, tmp_path)
    before = nss.snapshot(w.host)
    m = w.manager()
    m.define(
        NetworkSpec.model_validate(
            {
                "name": "iso",
                "mode": "isolated",
                "bridge": "vkiso0",
                "subnet": "10.77.0.1/24",
                "dhcp_start": "10.77.0.10",
                "dhcp_end": "10.77.0.50",
                "domain": "iso.test",
                "hosts": [{"mac": stable_mac("iso-a", 0), "ip": "10.77.0.42", "hostname": "alpha"}],
            }
        )
    )
    m.start("iso")
    a, b = plug(w, m, "iso-a", "iso"), plug(w, m, "iso-b", "iso")
    ip_a, ip_b = a.dhcp(), b.dhcp()
    assert ip_a == "10.77.0.42"  # the static reservation
    assert ip_b and ipaddress.ip_address(ip_b) in ipaddress.ip_network("10.77.0.0/24")
    assert a.ping("10.77.0.1") and a.ping(ip_b) and b.ping(ip_a)
    # No router was offered; even with one set by hand, the host does not forward for an isolated network.
    assert nss.run(a.ns, "ip", "route", "show", "default").stdout == ""
    nss.run(a.ns, "ip", "route", "add", "default", "via", "10.77.0.1")
    assert a.wget(f"http://{OUT_IP}/") is None
    assert not a.ping(OUT_IP, count=1)
    # DNS for the network's domain is served by its dnsmasq, on the bridge address.
    out = nss.run(b.ns, "timeout", "5", "busybox", "nslookup", "alpha.iso.test", "10.77.0.1").stdout
    assert "10.77.0.42" in out
    _stop_guests(nss)
    m.detach_vm("iso-a")
    m.detach_vm("iso-b")
    m.stop("iso")
    assert nss.snapshot(w.host) == before


def test_bridge_guest_gets_outside_dhcp_and_talks_both_ways(nss: Namespaces, tmp_path: Path) -> None:
    w = build_world(nss, tmp_path, bridged=True, outside_dhcp=True)
    before = nss.snapshot(w.host)
    m = w.manager()
    m.define(NetworkSpec(name="lan", mode="bridge", bridge="br0"))
    m.start("lan")
    g = plug(w, m, "br-a", "lan")
    h = plug(w, m, "br-b", "bridge=br0")  # ad hoc, without a defined network
    ip, ip2 = g.dhcp(), h.dhcp()
    assert ip and ipaddress.ip_address(ip) in OUTSIDE and ip not in (HOST_IP, OUT_IP)
    assert ip2 and ipaddress.ip_address(ip2) in OUTSIDE
    assert nss.ok(w.out, "busybox", "ping", "-c", "2", "-W", "2", ip)
    assert nss.ok(w.host, "busybox", "ping", "-c", "2", "-W", "2", ip)
    assert g.ping(HOST_IP) and g.ping(OUT_IP) and g.ping(ip2)
    assert g.wget(f"http://{OUT_IP}/") == f"client={ip}\n"  # no NAT: the outside sees the guest itself
    assert [x.ip for x in m.domifaddr("br-a")] == [ip]  # from the host's ARP table
    with IPRoute(netns=w.host) as ipr:
        tap = ipr.get_links(ipr.link_lookup(ifname=m.attachments("br-a")[0].ifname)[0])[0]
        assert tap.get_attr("IFLA_MASTER") == ipr.link_lookup(ifname="br0")[0]
    _stop_guests(nss)
    m.detach_vm("br-a")
    m.detach_vm("br-b")
    m.stop("lan")
    assert nss.snapshot(w.host) == before


def test_bridge_network_needs_an_existing_bridge(nss: Namespaces, tmp_path: Path) -> None:
    w = build_world(nss, tmp_path)
    m = w.manager()
    m.define(NetworkSpec(name="lan", mode="bridge", bridge="br9"))
    with pytest.raises(HostError, match="bridge 'br9' does not exist"):
        m.start("lan")
    with pytest.raises(HostError, match="'eth0' is a veth link, not a bridge"):
        m.attach_nic("vm", 0, "bridge=eth0")
    assert m.attachments() == []


def test_direct_guest_reaches_outside_but_not_host(nss: Namespaces, tmp_path: Path) -> None:
    w = build_world(nss, tmp_path, outside_dhcp=True)
    before = nss.snapshot(w.host)
    m = w.manager()
    arg = parse_network_arg("direct=eth0,mode=bridge")
    assert arg.note == DIRECT_NOTE and "cannot talk to the host" in DIRECT_NOTE
    g = plug(w, m, "dv", "direct=eth0,mode=bridge")
    att = m.attachments("dv")[0]
    assert att.kind == "macvtap" and att.device and Path(att.device).exists()
    ip = g.dhcp()
    assert ip and ipaddress.ip_address(ip) in OUTSIDE
    assert g.ping(OUT_IP)
    assert g.wget(f"http://{OUT_IP}/") == f"client={ip}\n"
    assert not g.ping(HOST_IP, count=1)
    assert not nss.ok(w.host, "busybox", "ping", "-c", "1", "-W", "1", ip)
    _stop_guests(nss)
    m.detach_vm("dv")
    assert not Path(att.device).exists()
    assert nss.snapshot(w.host) == before


@pytest.mark.parametrize("mode", ["vepa", "private", "passthrough"])
def test_direct_modes_create_macvtap_in_that_mode(nss: Namespaces, tmp_path: Path, mode: str) -> None:
    w = build_world(nss, tmp_path)
    m = w.manager()
    nic = m.attach_nic("dm", 0, f"direct=eth0,mode={mode}")
    with IPRoute(netns=w.host) as ipr:
        link = ipr.get_links(ipr.link_lookup(ifname=nic.ifname)[0])[0]
        data = link.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
        assert link.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_KIND") == "macvtap"
        assert data.get_attr("IFLA_MACVTAP_MODE") == {"passthrough": "passthru"}.get(mode, mode)
        if mode != "passthrough":  # passthrough hands the guest the NIC itself, with its own MAC
            assert link.get_attr("IFLA_ADDRESS") == nic.mac
    m.detach_vm("dm")
    with pytest.raises(ConfigError, match="mode=bridge"):
        m.attach_nic("dm", 0, "direct=eth0,mode=bogus")
