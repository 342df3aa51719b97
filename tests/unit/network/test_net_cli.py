"""The net-* commands against a state directory (no network is started: that needs root and a namespace)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from virtkit.cli import net
from virtkit.errors import ConfigError


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    monkeypatch.setenv("VIRTKIT_HOME", str(tmp_path))
    app = typer.Typer()
    net.register(app)
    return app


def test_define_info_autostart_undefine(cli: typer.Typer, tmp_path: Path) -> None:
    r = CliRunner()
    f = tmp_path / "lan.json"
    f.write_text(json.dumps({"name": "lan", "mode": "bridge", "bridge": "br0"}))
    res = r.invoke(cli, ["net-define", str(f)])
    assert res.exit_code == 0 and "Network lan defined" in res.stdout
    # A routed network's state is read from netlink and nft; unit tests stay off the host's, so drop default.
    (tmp_path / "networks" / "default.json").unlink()
    res = r.invoke(cli, ["net-list", "--all", "--json"])
    assert res.exit_code == 0, res.output
    assert [(n["name"], n["state"], n["bridge"]) for n in json.loads(res.stdout)] == [("lan", "inactive", "br0")]
    assert json.loads(r.invoke(cli, ["net-list", "--json"]).stdout) == []
    assert r.invoke(cli, ["net-autostart", "lan"]).exit_code == 0
    assert json.loads((tmp_path / "networks" / "lan.json").read_text())["autostart"] is True
    assert r.invoke(cli, ["net-autostart", "lan", "--disable"]).exit_code == 0
    assert json.loads((tmp_path / "networks" / "lan.json").read_text())["autostart"] is False
    res = r.invoke(cli, ["net-info", "lan", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["bridge"] == "br0"
    assert r.invoke(cli, ["net-undefine", "lan"]).exit_code == 0
    assert not (tmp_path / "networks" / "lan.json").exists()


def test_errors_are_virtkit_errors(cli: typer.Typer, tmp_path: Path) -> None:
    r = CliRunner()
    res = r.invoke(cli, ["net-info", "nope"])
    assert isinstance(res.exception, ConfigError) and "not defined" in str(res.exception)
    f = tmp_path / "bad.json"
    f.write_text(json.dumps({"name": "bad", "mode": "nat", "bridge": "x;y", "subnet": "10.0.0.1/24"}))
    res = r.invoke(cli, ["net-define", str(f)])
    assert isinstance(res.exception, ConfigError) and "bridge: 'x;y' is not a valid interface name" in str(
        res.exception
    )


def test_direct_define_prints_the_host_caveat(cli: typer.Typer, tmp_path: Path) -> None:
    f = tmp_path / "d.json"
    f.write_text(json.dumps({"name": "d", "mode": "direct", "interface": "eth0", "macvtap_mode": "vepa"}))
    res = CliRunner().invoke(cli, ["net-define", str(f)])
    assert res.exit_code == 0 and "cannot talk to the host" in res.output
