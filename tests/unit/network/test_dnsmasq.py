from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from virtkit.network import dnsmasq
from virtkit.network.spec import DhcpHost, NetworkSpec, default_network

GOLDEN = Path(__file__).parent / "golden"
PATHS = dnsmasq.Paths.under(Path("/var/lib/virtkit/run/net/default"))


def test_default_config_golden() -> None:
    assert dnsmasq.config(default_network(), PATHS) == (GOLDEN / "dnsmasq-default.conf").read_text()


def test_isolated_config_golden() -> None:
    spec = NetworkSpec.model_validate(
        {
            "name": "iso",
            "mode": "isolated",
            "bridge": "vkiso0",
            "subnet": "10.77.0.1/24",
            "dhcp_start": "10.77.0.10",
            "dhcp_end": "10.77.0.50",
            "domain": "iso.test",
        }
    )
    paths = dnsmasq.Paths.under(Path("/var/lib/virtkit/run/net/iso"))
    assert dnsmasq.config(spec, paths) == (GOLDEN / "dnsmasq-isolated.conf").read_text()


def test_hosts_files() -> None:
    hosts = [
        DhcpHost(mac="52:54:00:00:00:01", ip=ipaddress.IPv4Address("10.0.0.5"), hostname="web"),
        DhcpHost(mac="52:54:00:00:00:02", ip=ipaddress.IPv4Address("10.0.0.6")),
    ]
    assert dnsmasq.hostsfile(hosts) == "52:54:00:00:00:01,10.0.0.5,web\n52:54:00:00:00:02,10.0.0.6\n"
    assert dnsmasq.dns_hosts(hosts) == "10.0.0.5 web\n"
    assert dnsmasq.hostsfile([]) == ""


@pytest.mark.parametrize("bad", ["a\nb", "x y", "a,b", "#c", "a=b", ""])
def test_nothing_unsafe_reaches_the_file(bad: str) -> None:
    with pytest.raises(ValueError, match="cannot go into a dnsmasq configuration"):
        dnsmasq._safe(bad)


def test_run_dir_with_unsafe_chars_is_refused() -> None:
    with pytest.raises(ValueError):
        dnsmasq.config(default_network(), dnsmasq.Paths.under(Path("/tmp/a dir\nserver=1.1.1.1")))


def test_parse_leases() -> None:
    text = (
        "1700000000 52:54:00:AA:BB:CC 192.168.122.50 web 01:52:54:00:aa:bb:cc\n"
        "0 52:54:00:00:00:02 192.168.122.51 * *\n"
        "duid 00:01:00:01:2c:00\n"
        "1700000000 52:54:00:00:00:03 fd00::5 v6 *\n"
        "garbage\n"
        "notanumber 52:54:00:00:00:04 192.168.122.52 x *\n"
    )
    leases = dnsmasq.parse_leases(text)
    assert [(lease.mac, str(lease.ip), lease.hostname, lease.expiry) for lease in leases] == [
        ("52:54:00:aa:bb:cc", "192.168.122.50", "web", 1700000000),
        ("52:54:00:00:00:02", "192.168.122.51", None, 0),
    ]
    assert leases[0].client_id == "01:52:54:00:aa:bb:cc" and leases[1].client_id is None


def test_read_pid_checks_the_process(tmp_path: Path) -> None:
    pid = tmp_path / "pid"
    assert dnsmasq.read_pid(pid, tmp_path / "conf") is None
    pid.write_text("1\n")  # pid 1 is not our dnsmasq
    assert dnsmasq.read_pid(pid, tmp_path / "conf") is None
    pid.write_text("junk")
    assert dnsmasq.read_pid(pid, tmp_path / "conf") is None
