"""`default` (NAT on virbr0), port forwards, restart adoption and teardown, in throwaway namespaces."""

from __future__ import annotations

import ipaddress
import os
import signal
from pathlib import Path

import pytest

from tests.network.conftest import HOST_IP, OUT_IP, Namespaces, build_world, plug, wait_for
from virtkit.errors import ConfigError
from virtkit.network import NetworkSpec

pytestmark = pytest.mark.network


def test_default_nat_two_guests_dhcp_ping_and_masquerade(nss: Namespaces, tmp_path: Path) -> None:
    w = build_world(nss, tmp_path)
    before = nss.snapshot(w.host)
    m = w.manager()
    assert [i.name for i in m.list(all=True)] == ["default"]
    info = m.start("default")
    assert info.state == "active" and info.bridge == "virbr0" and info.subnet == "192.168.122.1/24"

    a, b = plug(w, m, "vm-a", "default"), plug(w, m, "vm-b", "default")
    ip_a, ip_b = a.dhcp(), b.dhcp()
    net = ipaddress.ip_network("192.168.122.0/24")
    assert ip_a and ip_b and ip_a != ip_b
    assert ipaddress.ip_address(ip_a) in net and ipaddress.ip_address(ip_b) in net
    leases = {lease.mac: str(lease.ip) for lease in m.leases("default")}
    assert leases == {a.mac: ip_a, b.mac: ip_b}
    assert [x.ip for x in m.domifaddr("vm-a")] == [ip_a]
    assert a.ping(ip_b) and b.ping(ip_a)
    assert a.ping("192.168.122.1")
    # The outside server sees the host's outside address, not the guest's.
    assert a.wget(f"http://{OUT_IP}/") == f"client={HOST_IP}\n"
    # ...and the outside cannot open connections into the NAT network.
    assert not nss.ok(w.out, "busybox", "ping", "-c", "1", "-W", "1", ip_a)

    for p in nss.procs[1:]:
        p.terminate()
    m.detach_vm("vm-a")
    m.detach_vm("vm-b")
    m.stop("default")
    assert m.info("default").state == "inactive"
    assert nss.snapshot(w.host) == before
    assert not (w.state_dir / "run" / "net" / "default").exists()


def test_start_stop_idempotent_and_adopted_by_a_new_manager(nss: Namespaces, tmp_path: Path) -> None:
    w = build_world(nss, tmp_path)
    before = nss.snapshot(w.host)
    m = w.manager()
    first = m.start("default")
    assert m.start("default").dnsmasq_pid == first.dnsmasq_pid  # a second start changes nothing
    # A new management process finds the running network.
    m2 = w.manager()
    info = m2.info("default")
    assert info.state == "active" and info.dnsmasq_pid == first.dnsmasq_pid
    assert [i.name for i in m2.list()] == ["default"]
    # dnsmasq dies: the network is degraded and adopt() repairs it.
    assert first.dnsmasq_pid is not None
    os.kill(first.dnsmasq_pid, signal.SIGKILL)
    wait_for(lambda: m2.info("default").state == "degraded", 5, "dnsmasq to be gone")
    repaired = m2.adopt()
    assert [i.state for i in repaired] == ["active"]
    g = plug(w, m2, "vm-a", "default")
    assert g.dhcp()
    # A restart of the network while the VM runs plugs its TAP back into the new bridge.
    m2.stop("default")
    m2.start("default")
    assert g.ping("192.168.122.1")
    for p in nss.procs[1:]:
        p.terminate()
    m2.detach_vm("vm-a")
    m2.stop("default")
    m2.stop("default")
    assert nss.snapshot(w.host) == before


def test_publish_reaches_guest_web_server_from_outside_and_host(nss: Namespaces, tmp_path: Path) -> None:
    w = build_world(nss, tmp_path)
    before = nss.snapshot(w.host)
    m = w.manager()
    m.start("default")
    g = plug(w, m, "web", "default", publish=("8080:80",))
    ip = g.dhcp()
    reserved = m.attachments("web")[0].reserved_ip
    assert ip == reserved
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("hello from the guest\n")
    nss.spawn(g.ns, "busybox", "httpd", "-f", "-p", "80", "-h", str(www))
    wait_for(lambda: g.wget("http://127.0.0.1/") is not None, 10, "the guest's web server")
    url = f"http://{HOST_IP}:8080/"
    assert nss.run(w.out, "timeout", "5", "busybox", "wget", "-q", "-O", "-", url).stdout == "hello from the guest\n"
    assert nss.run(w.host, "timeout", "5", "busybox", "wget", "-q", "-O", "-", url).stdout == "hello from the guest\n"
    assert (
        nss.run(w.host, "timeout", "5", "busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/").stdout
        == "hello from the guest\n"
    )
    # The same host port cannot be published twice.
    with pytest.raises(ConfigError, match="8080/tcp is already published"):
        m.attach_nic("web2", 0, "default", ["8080:80"])
    assert "web2" not in {a.vm for a in m.attachments()}
    # When the VM goes, its forward goes with it.
    for p in nss.procs[1:]:
        p.terminate()
    m.detach_vm("web")
    rules = nss.run(w.host, "nft", "list", "table", "ip", "virtkit-default").stdout
    assert "dnat to" not in rules and "8080" not in rules
    m.stop("default")
    assert nss.snapshot(w.host) == before


def test_subnet_overlapping_a_route_is_refused_and_leaves_nothing(nss: Namespaces, tmp_path: Path) -> None:
    w = build_world(nss, tmp_path)
    m = w.manager()
    m.define(NetworkSpec(name="clash", mode="nat", bridge="vkclash0", subnet="10.0.0.1/24"))  # type: ignore[arg-type]
    from pyroute2 import IPRoute

    with IPRoute(netns=w.host) as ipr:
        ipr.route("add", dst="10.0.0.0/16", gateway=OUT_IP)
    before = nss.snapshot(w.host)
    with pytest.raises(ConfigError, match=r"overlaps the route to 10\.0\.0\.0/16 on eth0"):
        m.start("clash")
    assert m.info("clash").state == "inactive"
    assert nss.snapshot(w.host) == before
