"""The net-* commands over the API, against a state directory (no network is started: that needs root and a
namespace, tests/network/test_cli_netns.py does it)."""

from __future__ import annotations

import json

from tests.unit.cli.conftest import Cli


def test_define_info_autostart_undefine(served: Cli) -> None:
    f = served.home / "lan.json"
    f.write_text(json.dumps({"name": "lan", "mode": "bridge", "bridge": "br0"}))
    code, out, _ = served("net-define", str(f))
    assert code == 0 and "Network lan defined" in out
    # A routed network's state is read from netlink and nft; unit tests stay off the host's, so drop default.
    (served.home / "networks" / "default.json").unlink()
    code, out, err = served("net-list", "--all", "--json")
    assert code == 0, err
    assert [(n["name"], n["state"], n["bridge"]) for n in json.loads(out)] == [("lan", "inactive", "br0")]
    assert json.loads(served("net-list", "--json")[1]) == []
    code, out, _ = served("net-list", "--all")
    header, row = out.splitlines()
    assert header.split() == ["Name", "State", "Autostart", "Mode", "Device", "Subnet"]
    assert row.split() == ["lan", "inactive", "no", "bridge", "br0", "-"]
    assert header.index("State") == row.index("inactive")  # aligned
    assert served("net-autostart", "lan")[0] == 0
    assert json.loads((served.home / "networks" / "lan.json").read_text())["autostart"] is True
    assert served("net-autostart", "lan", "--disable")[0] == 0
    assert json.loads((served.home / "networks" / "lan.json").read_text())["autostart"] is False
    code, out, _ = served("net-info", "lan", "--json")
    assert code == 0 and json.loads(out)["bridge"] == "br0"
    code, out, _ = served("net-info", "lan")
    assert "State:       inactive" in out and "Bridge:      br0" in out
    assert served("net-undefine", "lan")[0] == 0
    assert not (served.home / "networks" / "lan.json").exists()


def test_errors_are_one_line_with_the_fix_and_an_exit_code(served: Cli) -> None:
    code, out, err = served("net-info", "nope")
    assert code == 2 and out == ""  # the network layer reports an unknown name as bad input (400)
    assert err.startswith("virtkit: error: ") and "not defined" in err and "\n  fix: " in err
    f = served.home / "bad.json"
    f.write_text(json.dumps({"name": "bad", "mode": "nat", "bridge": "x;y", "subnet": "10.0.0.1/24"}))
    code, _, err = served("net-define", str(f))
    assert code == 2 and "bridge: 'x;y' is not a valid interface name" in err


def test_direct_define_prints_the_host_caveat(served: Cli) -> None:
    f = served.home / "d.yaml"
    f.write_text("name: d\nmode: direct\ninterface: eth0\nmacvtap_mode: vepa\n")
    code, out, err = served("net-define", str(f))
    assert code == 0 and "Network d defined" in out and "cannot talk to the host" in err
