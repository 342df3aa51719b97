"""The API against a real virtkitd process (unix socket, real SQLite, real supervisors and cgroups) whose
engine is the process-backed fake: everything but the guest is real."""

from __future__ import annotations

import os
import signal
import socket
import stat
import threading
import time
from pathlib import Path

import httpx
import pytest
from tests.support.daemon import Daemon, running_daemon

from virtkit.client import ApiError, Client
from virtkit.daemon import cgroups


def _wait(pred, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def raw(d: Daemon) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(d.socket)), base_url="http://x", timeout=30)


def test_full_lifecycle(daemon: Daemon) -> None:
    c = daemon.client()
    info = c.define({"name": "vm1", "image": "tiny", "vcpus": 2, "memory": "128M"})
    assert info.state == "shut off" and info.vcpus == 2 and info.memory_mib == 128
    assert [d.name for d in c.list()] == [] and [d.name for d in c.list(all=True)] == ["vm1"]
    i = c.start("vm1")
    assert i.state == "running" and i.engine == "fake" and i.engine_pid and i.supervisor_pid
    assert c.suspend("vm1").state == "paused"
    assert c.list()[0].state == "paused"
    assert c.resume("vm1").state == "running"
    assert c.reboot("vm1").state == "running"
    r = c.exec("vm1", ["echo", "hi"])
    assert (r.exitcode, r.stdout) == (0, "echo hi\n")
    assert c.exec("vm1", ["false"]).exitcode == 1
    assert c.interfaces("vm1")[0].addresses == ["192.0.2.10/24"]
    s = c.stats("vm1")
    assert s.cpu_time_s is not None and s.block
    text, off = c.console("vm1")
    assert "fake console of vm1" in text and off == len(text)
    assert c.shutdown("vm1").state == "shut off"
    c.start("vm1")
    assert c.destroy("vm1").state == "shut off"
    c.undefine("vm1")
    assert c.list(all=True) == []
    kinds = [(e.type, e.state) for e in c.events(since=0, follow=False)]
    assert ("lifecycle", "running") in kinds and ("lifecycle", "paused") in kinds
    assert ("lifecycle", "shut off") in kinds and ("undefined", None) in kinds


def test_bad_input_is_a_4xx_with_a_clear_message(daemon: Daemon) -> None:
    c = daemon.client()
    c.define({"name": "keep", "image": "tiny"})
    h = raw(daemon)
    cases = [
        ("POST", "/v1/domains", {"json": {"name": "x", "image": "tiny", "vcpus": 0}}, 422, "vcpus"),
        ("POST", "/v1/domains", {"json": {"name": "x", "image": "tiny", "nics": [{"kind": "tap"}]}}, 422, "nics.0"),
        ("POST", "/v1/domains", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422,
         "invalid request"),
        ("POST", "/v1/domains", {"json": {"name": "keep", "image": "tiny"}}, 409, "already defined"),
        ("GET", "/v1/domains/ghost", {}, 404, "not defined"),
        ("POST", "/v1/domains/ghost/start", {}, 404, "not defined"),
        ("POST", "/v1/domains/keep/resume", {}, 409, "cannot resume"),
        ("POST", "/v1/domains/keep/exec", {"json": {"argv": ["true"]}}, 400, "not running"),
        ("POST", "/v1/domains/keep/exec", {"json": {"argv": []}}, 422, "argv"),
        ("POST", "/v1/domains", {"content": b"x" * (2 << 20), "headers": {"content-type": "application/json"}},
         413, "larger than"),
        ("DELETE", "/v1/domains/keep/snapshots/none", {}, 404, "no snapshot"),
    ]
    for method, path, kw, status, words in cases:
        r = h.request(method, path, **kw)
        assert r.status_code == status, (path, r.status_code, r.text)
        body = r.json()
        assert words in body["error"], (path, body)
        assert body["kind"]
    # a chunked body without a length is counted too
    big = (b"x" * 65536 for _ in range(40))
    r = h.post("/v1/domains", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    # nothing was lost or half-made
    assert [d.name for d in c.list(all=True)] == ["keep"]
    c.start("keep")
    with pytest.raises(ApiError) as e:
        c.undefine("keep")
    assert e.value.status == 409 and "destroy" in (e.value.hint or "")
    with pytest.raises(ApiError) as e:
        c.start("keep")
    assert e.value.status == 409
    assert c.info("keep").state == "running"


def test_unix_socket_is_private_by_default(daemon: Daemon) -> None:
    mode = stat.S_IMODE(os.stat(daemon.socket).st_mode)
    assert mode == 0o600


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_tcp_needs_the_token(home: Path) -> None:
    port = _free_port()
    with running_daemon(home, fake=True, tcp=f"127.0.0.1:{port}") as d:
        token = (home / "token").read_text().strip()
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/v1/domains").status_code == 401
        r = httpx.get(url + "/v1/domains", headers={"Authorization": "Bearer wrong-token-xxxxxxxx"})
        assert r.status_code == 401 and "token" in r.json()["error"]
        assert r.headers["www-authenticate"] == "Bearer"
        with Client(url=url, token=token) as c:
            c.define({"name": "t1", "image": "tiny"})
            assert [x.name for x in c.list(all=True)] == ["t1"]
        with Client(url=url, token="nope-nope-nope-nope") as c, pytest.raises(ApiError) as e:
            c.list()
        assert e.value.status == 401
        assert [x.name for x in d.client().list(all=True)] == ["t1"]  # the unix socket needs no token


def test_twenty_concurrent_clients(daemon: Daemon) -> None:
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            with daemon.client() as c:
                n = f"c{i}"
                c.define({"name": n, "image": "tiny"})
                c.start(n)
                assert c.exec(n, ["echo", str(i)]).stdout == f"echo {i}\n"
                assert any(d.name == n for d in c.list())
                c.destroy(n)
                c.undefine(n)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert daemon.client().list(all=True) == []


def test_restart_and_reattach(daemon: Daemon) -> None:
    c = daemon.client()
    pids = {}
    for n in ("a", "b", "c"):
        c.define({"name": n, "image": "tiny"})
        pids[n] = c.start(n).engine_pid
    c.suspend("b")
    daemon.kill(signal.SIGKILL)
    for pid in pids.values():
        os.kill(pid, 0)  # the VMs did not notice
    daemon.start()
    c = daemon.client()
    states = {d.name: d.state for d in c.list()}
    assert states == {"a": "running", "b": "paused", "c": "running"}
    for n, pid in pids.items():
        assert c.info(n).engine_pid == pid
    assert c.exec("a", ["echo", "x"]).exitcode == 0
    c.resume("b")
    # still managed: a crash after the restart is seen by the new daemon
    os.kill(pids["c"], signal.SIGKILL)
    _wait(lambda: c.info("c").state == "crashed")
    assert c.destroy("a").state == "shut off"


def test_crash_isolation(daemon: Daemon) -> None:
    c = daemon.client()
    for n in ("x", "y", "z"):
        c.define({"name": n, "image": "tiny"})
        c.start(n)
    victim = c.info("y").engine_pid
    assert victim
    os.kill(victim, signal.SIGKILL)
    _wait(lambda: c.info("y").state_reason == "engine crashed")
    assert c.info("y").state == "crashed"
    for n in ("x", "z"):
        assert c.info(n).state == "running"
        assert c.exec(n, ["echo", "ok"]).exitcode == 0
    assert c.start("y").state == "running"  # a crashed domain can start again


def test_a_killed_supervisor_is_reported_and_its_engine_does_not_leak(daemon: Daemon) -> None:
    c = daemon.client()
    c.define({"name": "s", "image": "tiny"})
    i = c.start("s")
    assert i.supervisor_pid and i.engine_pid
    os.kill(i.supervisor_pid, signal.SIGKILL)
    _wait(lambda: c.info("s").state_reason == "supervisor died")
    assert c.info("s").state == "crashed"
    _wait(lambda: not Path(f"/proc/{i.engine_pid}").exists() or
          Path(f"/proc/{i.engine_pid}/stat").read_text().split(") ")[1][0] == "Z")


@pytest.mark.skipif(cgroups.version() is None or os.geteuid() != 0, reason="needs root and cgroups")
def test_cgroup_limits_visible_in_the_vms_cgroup(daemon: Daemon) -> None:
    c = daemon.client()
    c.define({"name": "cg", "image": "tiny", "vcpus": 2, "memory": 128, "limits": {"cpus": 0.5}})
    i = c.start("cg")
    group = cgroups.VmCgroup("cg", parent=daemon.cgroup_parent)
    assert i.engine_pid in group.pids() and i.supervisor_pid in group.pids()
    if group.version == 1:
        assert (group.paths["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert (group.paths["memory"] / "memory.limit_in_bytes").read_text().strip() == str((128 + 512) << 20)
        assert i.cgroup["cpu.cfs_quota_us"] == "50000"
    else:
        assert (group.paths["unified"] / "cpu.max").read_text().split() == ["50000", "100000"]
        assert (group.paths["unified"] / "memory.max").read_text().strip() == str((128 + 512) << 20)
    c.destroy("cg")
    _wait(lambda: not any(p.exists() for p in group.paths.values()))


def test_autostart_domains_start_with_the_daemon(daemon: Daemon) -> None:
    c = daemon.client()
    c.define({"name": "auto1", "image": "tiny", "autostart": True})
    c.define({"name": "manual", "image": "tiny"})
    c.define({"name": "auto2", "image": "tiny"})
    c.set_autostart("auto2", True)
    daemon.kill(signal.SIGTERM)
    daemon.start()
    c = daemon.client()
    _wait(lambda: {d.name for d in c.list()} == {"auto1", "auto2"})
    assert c.info("manual").state == "shut off"


def test_events_stream_live(daemon: Daemon) -> None:
    c = daemon.client()
    c.define({"name": "ev", "image": "tiny"})
    got: list[tuple[str, str | None]] = []

    def listen() -> None:
        with daemon.client() as lc:
            for e in lc.events():
                got.append((e.type, e.state))
                if e.state == "shut off" and e.type == "lifecycle":
                    return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    time.sleep(0.5)
    c.start("ev")
    c.destroy("ev")
    t.join(10)
    assert ("lifecycle", "running") in got and ("lifecycle", "shut off") in got


def test_disk_snapshots(daemon: Daemon, tmp_path: Path) -> None:
    disk = tmp_path / "d.raw"
    disk.write_bytes(b"A" * 4096)
    c = daemon.client()
    c.define({"name": "sn", "image": "tiny", "disks": [{"path": str(disk)}]})
    s = c.snapshot_create("sn", "s1", "first")
    assert (s.name, s.state, s.memory) == ("s1", "shut off", False)
    disk.write_bytes(b"B" * 4096)
    c.snapshot_revert("sn", "s1")
    assert disk.read_bytes() == b"A" * 4096
    c.start("sn")
    s2 = c.snapshot_create("sn", "s2")
    assert s2.state == "running" and s2.memory  # the fake engine can save memory
    with pytest.raises(ApiError) as e:
        c.snapshot_create("sn", "s2")
    assert e.value.status == 409
    assert [x.name for x in c.snapshot_list("sn")] == ["s1", "s2"]
    assert c.snapshot_revert("sn", "s1").state == "shut off"
    c.snapshot_delete("sn", "s1")
    assert [x.name for x in c.snapshot_list("sn")] == ["s2"]


def test_a_snapshot_of_a_missing_disk_is_a_clear_400(daemon: Daemon, tmp_path: Path) -> None:
    c = daemon.client()
    c.define({"name": "nodisk", "image": "tiny", "disks": [{"path": str(tmp_path / "gone.raw")}]})
    with pytest.raises(ApiError) as e:
        c.snapshot_create("nodisk", "s1")
    assert e.value.status == 400 and "disks.0.path" in str(e.value) and "does not exist" in str(e.value)
    assert c.snapshot_list("nodisk") == []


def test_openapi_document(daemon: Daemon) -> None:
    doc = raw(daemon).get("/openapi.json").json()
    for p in ("/v1/domains", "/v1/domains/{name}/start", "/v1/domains/{name}/snapshots", "/v1/events"):
        assert p in doc["paths"]
    assert "DomainSpec" in doc["components"]["schemas"]


def test_console_attach_over_the_api(daemon: Daemon) -> None:
    c = daemon.client()
    c.define({"name": "con", "image": "tiny"})
    c.start("con")
    with c.console_connect("con") as ws:
        got = b""
        while b"login: " not in got:
            got += ws.recv(timeout=10)
        assert got.startswith(b"fake console of con")
        ws.send(b"root\n")  # typed into the guest's console; the fake echoes it to its serial log
        while b"root\n" not in got:
            got += ws.recv(timeout=10)
    text, _ = c.console("con")
    assert text.endswith("login: root\n")


def test_sigterm_stops_the_daemon_cleanly_and_leaves_the_vms(daemon: Daemon) -> None:
    c = daemon.client()
    c.define({"name": "keep-running", "image": "tiny"})
    pid = c.start("keep-running").engine_pid
    daemon.kill(signal.SIGTERM)
    assert daemon.proc is not None and daemon.proc.returncode == 0
    assert not daemon.socket.exists()
    assert pid and Path(f"/proc/{pid}").exists()
    daemon.start()
    assert daemon.client().info("keep-running").engine_pid == pid


def test_without_the_network_layer_networks_are_a_clear_4xx(daemon: Daemon) -> None:
    h = raw(daemon)
    assert h.get("/v1/networks").json() == []
    r = h.post("/v1/networks/default/start")
    assert r.status_code == 400 and "no network layer" in r.json()["error"]
    r = h.post("/v1/domains", json={"name": "n1", "image": "tiny", "nics": ["default"]})
    assert r.status_code == 201
    r = h.post("/v1/domains/n1/start")
    assert r.status_code == 400 and "nics.0" in r.json()["error"] and r.json()["hint"]
    assert daemon.client().info("n1").state == "shut off"
