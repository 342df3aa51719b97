"""Real guests (the default image on the QEMU engine, TCG) on virtkit's networks, inside throwaway namespaces.

The QEMU processes run inside the test's "host" namespace (``QemuEngine(netns=...)``) and open the TAPs the
network manager created there by name; macvtap NICs get the character device the manager made for them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.network.conftest import HOST_IP, OUT_IP, Namespaces, World, build_world, wait_for
from virtkit.config import defaults
from virtkit.engines.qemu import QemuEngine, QemuMachine
from virtkit.network import NetworkManager, NetworkSpec
from virtkit.oneshot import spec_for

pytestmark = [pytest.mark.network, pytest.mark.integration]
OUTSIDE = ipaddress.ip_network("203.0.113.0/24")


class Vm:
    def __init__(self, machine: QemuMachine, mac: str) -> None:
        self.machine, self.mac = machine, mac

    def sh(self, script: str, timeout: float = 30) -> tuple[int, str]:
        r = self.machine.agent().exec(["sh", "-c", script], timeout=timeout)
        return r.exitcode, (r.stdout + r.stderr).decode(errors="replace")

    def ok(self, script: str, timeout: float = 30) -> bool:
        return self.sh(script, timeout)[0] == 0

    def ip(self) -> str | None:
        _code, out = self.sh("ip -4 -o addr show dev eth0")
        for word in out.split():
            if "/" in word and word[0].isdigit():
                return word.split("/")[0]
        return None


@pytest.fixture
def guests(tiny_image: Any, tmp_path: Path) -> Iterator[Callable[..., Vm]]:
    made: list[tuple[QemuMachine, NetworkManager, str]] = []

    def boot(w: World, m: NetworkManager, name: str, net: str, publish: tuple[str, ...] = ()) -> Vm:
        nic = m.attach_nic(name, 0, net, publish)
        spec = spec_for(tiny_image.kernel, tiny_image.initrd, name=name, nics=(nic,))
        machine = QemuEngine(netns=w.host, accel="tcg").start(spec, tmp_path / name, die_with_parent=True)
        made.append((machine, m, name))
        machine.wait_ready(defaults.READY_TIMEOUT_S)
        vm = Vm(machine, str(nic.mac))
        wait_for(lambda: vm.ip() is not None, 60, f"{name} to get a DHCP address")
        return vm

    yield boot
    for machine, m, name in made:
        machine.destroy()
        m.detach_vm(name)


def teardown_ok(nss: Namespaces, w: World, before: dict[str, object], guests_done: Callable[[], None]) -> None:
    guests_done()
    assert nss.snapshot(w.host) == before


def test_default_nat_with_real_guests(nss: Namespaces, tmp_path: Path, guests: Callable[..., Vm]) -> None:
    w = build_world(nss, tmp_path)
    before = nss.snapshot(w.host)
    m = w.manager()
    m.start("default")
    a = guests(w, m, "nat-a", "default", ("8080:80",))
    b = guests(w, m, "nat-b", "default")
    ip_a, ip_b = a.ip(), b.ip()
    assert ip_a and ip_b and ip_a != ip_b
    net = ipaddress.ip_network("192.168.122.0/24")
    assert ipaddress.ip_address(ip_a) in net and ipaddress.ip_address(ip_b) in net
    assert {le.mac: str(le.ip) for le in m.leases("default")} == {a.mac: ip_a, b.mac: ip_b}
    assert [x.ip for x in m.domifaddr("nat-a")] == [ip_a]
    assert a.ok(f"ping -c 2 -W 2 {ip_b}") and b.ok(f"ping -c 2 -W 2 {ip_a}")
    code, page = a.sh(f"timeout 10 wget -q -O - http://{OUT_IP}/")
    assert code == 0 and page == f"client={HOST_IP}\n"  # masqueraded behind the host's outside address
    # --publish 8080:80 reaches a web server in the guest from the outside and from the host.
    assert a.ok("mkdir -p /tmp/www && echo hello-from-guest > /tmp/www/index.html && httpd -p 80 -h /tmp/www")
    url = f"http://{HOST_IP}:8080/"
    for ns in (w.out, w.host):
        r = nss.run(ns, "timeout", "10", "busybox", "wget", "-q", "-O", "-", url)
        assert r.stdout == "hello-from-guest\n"
    assert (
        nss.run(w.host, "timeout", "10", "busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/").stdout
        == "hello-from-guest\n"
    )
    for machine in (a.machine, b.machine):
        machine.destroy()
    m.detach_vm("nat-a")
    m.detach_vm("nat-b")
    m.stop("default")
    assert nss.snapshot(w.host) == before


def test_isolated_with_a_real_guest(nss: Namespaces, tmp_path: Path, guests: Callable[..., Vm]) -> None:
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
            }
        )
    )
    m.start("iso")
    g = guests(w, m, "iso-a", "iso")
    assert g.ok("ping -c 2 -W 2 10.77.0.1")
    assert nss.ok(w.host, "busybox", "ping", "-c", "2", "-W", "2", str(g.ip()))
    assert g.ok("ip route add default via 10.77.0.1 || true")
    assert not g.ok(f"ping -c 1 -W 2 {OUT_IP}")
    assert not g.ok(f"timeout 10 wget -q -O - http://{OUT_IP}/", timeout=30)
    g.machine.destroy()
    m.detach_vm("iso-a")
    m.stop("iso")
    assert nss.snapshot(w.host) == before


def test_bridge_with_a_real_guest(nss: Namespaces, tmp_path: Path, guests: Callable[..., Vm]) -> None:
    w = build_world(nss, tmp_path, bridged=True, outside_dhcp=True)
    before = nss.snapshot(w.host)
    m = w.manager()
    g = guests(w, m, "br-a", "bridge=br0")
    ip = g.ip()
    assert ip and ipaddress.ip_address(ip) in OUTSIDE and ip not in (HOST_IP, OUT_IP)
    assert nss.ok(w.out, "busybox", "ping", "-c", "2", "-W", "2", ip)
    assert nss.ok(w.host, "busybox", "ping", "-c", "2", "-W", "2", ip)
    assert g.ok(f"ping -c 2 -W 2 {HOST_IP}") and g.ok(f"ping -c 2 -W 2 {OUT_IP}")
    assert g.sh(f"timeout 10 wget -q -O - http://{OUT_IP}/")[1] == f"client={ip}\n"
    g.machine.destroy()
    m.detach_vm("br-a")
    assert nss.snapshot(w.host) == before


def test_direct_with_a_real_guest(nss: Namespaces, tmp_path: Path, guests: Callable[..., Vm]) -> None:
    w = build_world(nss, tmp_path, outside_dhcp=True)
    before = nss.snapshot(w.host)
    m = w.manager()
    g = guests(w, m, "dv-a", "direct=eth0,mode=bridge")
    ip = g.ip()
    assert ip and ipaddress.ip_address(ip) in OUTSIDE
    assert g.ok(f"ping -c 2 -W 2 {OUT_IP}")
    assert g.sh(f"timeout 10 wget -q -O - http://{OUT_IP}/")[1] == f"client={ip}\n"
    # The documented macvtap limit, asserted both ways.
    assert not g.ok(f"ping -c 1 -W 2 {HOST_IP}")
    assert not nss.ok(w.host, "busybox", "ping", "-c", "1", "-W", "2", ip)
    g.machine.destroy()
    m.detach_vm("dv-a")
    assert nss.snapshot(w.host) == before
