"""The CLI as a user runs it (a subprocess) against a real virtkitd with the fake engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.daemon import SRC, Daemon

from virtkit.network.store import NetworkStore


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def vk(d: Daemon | Path, *args: str, env: dict[str, str] | None = None) -> Result:
    """Run the CLI in-process (typer's runner) with the environment a user's shell would have."""
    from typer.testing import CliRunner

    from virtkit.cli.vm import app

    home = d.home if isinstance(d, Daemon) else d
    e = {"VIRTKIT_HOME": str(home), "VIRTKIT_SOCKET": str(home / "virtkitd.sock"), "COLUMNS": "200",
         "VIRTKIT_NO_DAEMON_AUTOSTART": "1", **(env or {})}
    r = CliRunner().invoke(app, list(args), env=e)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return Result(r.exit_code, r.stdout, r.stderr)


def vk_process(d: Daemon | Path, *args: str, env: dict[str, str] | None = None) -> Result:
    """Run the CLI as a separate process, exactly as a user does."""
    home = d.home if isinstance(d, Daemon) else d
    e = {**os.environ, "PYTHONPATH": str(SRC), "VIRTKIT_HOME": str(home),
         "VIRTKIT_SOCKET": str(home / "virtkitd.sock"), "COLUMNS": "200", **(env or {})}
    if isinstance(d, Daemon):
        e["VIRTKIT_CGROUP_PARENT"] = d.cgroup_parent
    p = subprocess.run([sys.executable, "-m", "virtkit.cli.vm", *args], capture_output=True, text=True,
                       env=e, timeout=120, stdin=subprocess.DEVNULL)
    return Result(p.returncode, p.stdout, p.stderr)


def test_define_start_list_info_destroy(daemon: Daemon, tmp_path: Path) -> None:
    spec = tmp_path / "vm.toml"
    spec.write_text('name = "cli1"\nimage = "tiny"\nvcpus = 2\nmemory = "128M"\n')
    r = vk(daemon, "define", str(spec))
    assert r.returncode == 0 and "Domain 'cli1' defined" in r.stdout
    assert vk(daemon, "start", "cli1").returncode == 0
    r = vk(daemon, "list")
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["Name", "State", "Engine", "Autostart"]
    assert lines[1].split() == ["cli1", "running", "auto", "no"]
    # columns are aligned: every row starts its State column at the same offset
    assert lines[0].index("State") == lines[1].index("running")
    info = json.loads(vk(daemon, "dominfo", "cli1", "--json").stdout)
    assert info["state"] == "running" and info["vcpus"] == 2 and info["engine"] == "fake"
    r = vk(daemon, "dominfo", "cli1")
    assert "Technique:" in r.stdout and "CPU time:" in r.stdout
    assert json.loads(vk(daemon, "domstats", "cli1", "--json").stdout)["name"] == "cli1"
    assert "192.0.2.10/24" in vk(daemon, "domifaddr", "cli1").stdout
    assert vk(daemon, "suspend", "cli1").returncode == 0
    assert json.loads(vk(daemon, "list", "--json").stdout)[0]["state"] == "paused"
    assert vk(daemon, "resume", "cli1").returncode == 0
    assert vk(daemon, "destroy", "cli1").returncode == 0
    assert vk(daemon, "list").stdout.count("cli1") == 0
    assert "shut off" in vk(daemon, "list", "--all").stdout
    assert vk(daemon, "undefine", "cli1").returncode == 0


def test_exit_codes(daemon: Daemon, tmp_path: Path) -> None:
    r = vk_process(daemon, "start", "ghost")
    assert r.returncode == 3 and "not defined" in r.stderr and "fix:" in r.stderr
    spec = tmp_path / "a.json"
    spec.write_text(json.dumps({"name": "dup", "image": "tiny"}))
    assert vk(daemon, "define", str(spec)).returncode == 0
    r = vk(daemon, "define", str(spec))
    assert r.returncode == 4 and "already defined" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\nimage: tiny\nvcpus: lots\n")
    r = vk(daemon, "define", str(bad))
    assert r.returncode == 2 and "vcpus" in r.stderr
    assert vk(daemon, "resume", "dup").returncode == 4
    assert vk(daemon, "start", "dup").returncode == 0
    r = vk(daemon, "exec", "dup", "--", "false")
    assert r.returncode == 1
    r = vk(daemon, "exec", "dup", "--", "echo", "hello")
    assert r.returncode == 0 and r.stdout == "echo hello\n"


def test_launch_and_snapshots(daemon: Daemon) -> None:
    r = vk(daemon, "launch", "l1", "--memory", "128M", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["state"] == "running"
    assert vk(daemon, "snapshot-create-as", "l1", "snap1", "--description", "first").returncode == 0
    r = vk(daemon, "snapshot-list", "l1")
    assert "snap1" in r.stdout and "first" in r.stdout
    assert vk(daemon, "snapshot-delete", "l1", "snap1").returncode == 0
    # a failed launch leaves nothing behind
    r = vk(daemon, "launch", "l2", "--image", "nosuch")
    assert r.returncode != 0 and "unknown image" in r.stderr
    assert "l2" not in vk(daemon, "list", "--all").stdout


def test_unreachable_daemon_and_start_on_demand(home: Path) -> None:
    r = vk_process(home, "list", env={"VIRTKIT_NO_DAEMON_AUTOSTART": "1"})
    assert r.returncode == 5 and "not answering" in r.stderr
    # The daemon started on demand is the shipped one, with its networks: leave it none to start here (the
    # autostart "default" network would put a bridge and NAT rules on this host).
    NetworkStore(home / "networks").delete("default")
    r = vk_process(home, "list", "--all", "--json")
    try:
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == []
        assert (home / "virtkitd.sock").exists()
    finally:
        lock = home / "virtkitd.lock"
        pid = int(lock.read_text()) if lock.exists() and lock.read_text() else None
        if pid:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.05)


def test_register_adds_the_verbs_at_top_level_without_clobbering() -> None:
    import typer

    from virtkit.cli.vm import command_name, register

    parent = typer.Typer()

    @parent.command("net-list")
    def theirs() -> None:
        pass

    register(parent, exclude=("shell",))
    names = [command_name(c) for c in parent.registered_commands]
    assert names.count("net-list") == 1 and parent.registered_commands[0].callback is theirs
    assert {"list", "start", "launch", "exec", "snapshot-create-as", "domifaddr"} <= set(names)
    assert "shell" not in names
