"""The net-* commands as a user runs them, inside the test's "host" namespace (``ip netns exec``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.network.conftest import SRC, Namespaces, build_world

pytestmark = pytest.mark.network
APP = "import typer; from virtkit.cli import net; app = typer.Typer(); net.register(app); app()"


def test_cli_start_list_info_leases_stop(nss: Namespaces, tmp_path: Path) -> None:
    w = build_world(nss, tmp_path)
    before = nss.snapshot(w.host)
    env = {**os.environ, "PYTHONPATH": str(SRC), "VIRTKIT_HOME": str(w.state_dir), "COLUMNS": "200"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", w.host, sys.executable, "-c", APP, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert json.loads(cli("net-list", "--json").stdout) == []
    r = cli("net-start", "default")
    assert r.returncode == 0 and "Network default started" in r.stdout
    listed = json.loads(cli("net-list", "--json").stdout)
    assert [(n["name"], n["state"], n["bridge"]) for n in listed] == [("default", "active", "virbr0")]
    info = cli("net-info", "default").stdout
    assert "State:       active" in info and "192.168.122.1/24" in info
    assert json.loads(cli("net-dhcp-leases", "default", "--json").stdout) == []
    assert cli("net-start", "default").returncode == 0  # idempotent
    assert cli("net-stop", "default").returncode == 0
    assert cli("net-stop", "default").returncode == 0
    assert json.loads(cli("net-list", "--all", "--json").stdout)[0]["state"] == "inactive"
    assert nss.snapshot(w.host) == before


def test_virtkit_run_on_default_network(nss: Namespaces, tmp_path: Path) -> None:
    """`virtkit run --network default` as a user runs it on a host (the test's namespace): the guest gets a
    lease on virbr0 and reaches the outside through NAT; its TAP is gone when the run ends."""
    from virtkit.config import defaults
    from virtkit.images import build_image

    image = build_image("tiny")  # the shared image cache; the networks live in this test's state dir
    w = build_world(nss, tmp_path)
    (w.state_dir / "images").symlink_to(defaults.image_dir())
    before = nss.snapshot(w.host)
    env = {**os.environ, "PYTHONPATH": str(SRC), "VIRTKIT_HOME": str(w.state_dir), "COLUMNS": "200"}
    script = (
        "for i in $(seq 60); do ip -4 addr show eth0 | grep -q 'inet 192.168.122' && break; sleep 0.5; done; "
        "ip -4 -o addr show eth0; timeout 20 wget -q -O - http://203.0.113.1/"
    )
    r = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            w.host,
            sys.executable,
            "-m",
            "virtkit",
            "run",
            "--network",
            "default",
            "--",
            "sh",
            "-c",
            script,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "inet 192.168.122." in r.stdout
    assert "client=203.0.113.2" in r.stdout  # the outside saw the host's address: NAT
    assert image.kernel.exists()
    stop = subprocess.run(
        ["ip", "netns", "exec", w.host, sys.executable, "-c", APP, "net-stop", "default"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stop.returncode == 0, stop.stderr
    assert nss.snapshot(w.host) == before
