"""The net-* commands as a user runs them (``virtkit net-...``), inside the test's "host" namespace
(``ip netns exec``): the first one starts virtkitd there, as on a host, and it serves the rest."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.network.conftest import SRC, Namespaces, build_world

pytestmark = pytest.mark.network


@contextlib.contextmanager
def daemon_stopped_after(state_dir: Path) -> Iterator[None]:
    """Stop the virtkitd the CLI started on demand (its pid is in the lock file), and wait until it is gone."""
    try:
        yield
    finally:
        lock = state_dir / "virtkitd.lock"
        text = lock.read_text().strip() if lock.exists() else ""
        if text:
            pid = int(text)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def virtkit_in(host: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", host, sys.executable, "-m", "virtkit", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_start_list_info_leases_stop(nss: Namespaces, tmp_path: Path) -> None:
    w = build_world(nss, tmp_path)
    before = nss.snapshot(w.host)
    env = {**os.environ, "PYTHONPATH": str(SRC), "VIRTKIT_HOME": str(w.state_dir), "COLUMNS": "200"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return virtkit_in(w.host, env, *args)

    with daemon_stopped_after(w.state_dir):
        # the daemon the first command starts brings up the autostart network, as libvirtd does
        r = cli("net-list", "--json")
        assert r.returncode == 0, r.stderr
        listed = json.loads(r.stdout)
        log = (w.state_dir / "virtkitd.log").read_text()
        assert [(n["name"], n["state"], n["bridge"]) for n in listed] == [("default", "active", "virbr0")], log
        r = cli("net-start", "default")  # idempotent
        assert r.returncode == 0 and "Network default started" in r.stdout
        r = cli("net-list")
        assert r.stdout.split() == ["Name", "State", "Autostart", "Mode", "Device", "Subnet",
                                    "default", "active", "yes", "nat", "virbr0", "192.168.122.1/24"]  # fmt: skip
        info = cli("net-info", "default").stdout
        assert "State:       active" in info and "192.168.122.1/24" in info
        assert json.loads(cli("net-dhcp-leases", "default", "--json").stdout) == []
        assert cli("net-stop", "default").returncode == 0
        assert cli("net-stop", "default").returncode == 0
        assert json.loads(cli("net-list", "--all", "--json").stdout)[0]["state"] == "inactive"
        r = cli("net-info", "nosuch")
        assert r.returncode == 2 and r.stderr.startswith("virtkit: error:") and "fix:" in r.stderr
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
    with daemon_stopped_after(w.state_dir):
        stop = virtkit_in(w.host, env, "net-stop", "default")
    assert stop.returncode == 0, stop.stderr
    assert nss.snapshot(w.host) == before
