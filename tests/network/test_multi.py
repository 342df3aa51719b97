"""Two NAT networks at once: each has its own table, guests of one cannot open connections into the other."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.network.conftest import HOST_IP, OUT_IP, Namespaces, build_world, plug
from virtkit.errors import ConfigError
from virtkit.network import NetworkSpec

pytestmark = pytest.mark.network


def test_two_nat_networks_side_by_side(nss: Namespaces, tmp_path: Path) -> None:
    w = build_world(nss, tmp_path)
    before = nss.snapshot(w.host)
    m = w.manager()
    m.define(
        NetworkSpec.model_validate(
            {
                "name": "lab",
                "mode": "nat",
                "bridge": "vklab0",
                "subnet": "10.66.0.1/24",
                "dhcp_start": "10.66.0.100",
                "dhcp_end": "10.66.0.200",
            }
        )
    )
    with pytest.raises(ConfigError, match="network 'lab' is not active"):
        m.attach_nic("x", 0, "lab")
    m.start("default")
    m.start("lab")
    tables = nss.run(w.host, "nft", "list", "tables").stdout.split("\n")
    assert "table ip virtkit-default" in tables and "table ip virtkit-lab" in tables
    a, b = plug(w, m, "m-a", "default"), plug(w, m, "m-b", "lab")
    ip_a, ip_b = a.dhcp(), b.dhcp()
    assert ip_a and ip_a.startswith("192.168.122.") and ip_b and ip_b.startswith("10.66.0.")
    assert a.wget(f"http://{OUT_IP}/") == f"client={HOST_IP}\n"
    assert b.wget(f"http://{OUT_IP}/") == f"client={HOST_IP}\n"
    # Like libvirt: traffic from one NAT network into another is rejected by the target network's table.
    assert not a.ping(ip_b, count=1) and not b.ping(ip_a, count=1)
    with pytest.raises(ConfigError, match="network 'lab' is active"):
        m.undefine("lab")
    for p in nss.procs[1:]:
        p.terminate()
    m.detach_vm("m-a")
    m.detach_vm("m-b")
    # Stopping one leaves the other untouched.
    m.stop("lab")
    assert m.info("default").state == "active" and m.info("lab").state == "inactive"
    assert "table ip virtkit-lab" not in nss.run(w.host, "nft", "list", "tables").stdout
    m.stop("default")
    m.undefine("lab")
    assert nss.snapshot(w.host) == before
