"""virtkitd with real guests: the QEMU engine (TCG here), the default image, the stock guest agent."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.daemon import SRC, Daemon, running_daemon

from virtkit.daemon import cgroups

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def image() -> Any:
    try:
        from virtkit.images import build_image
    except ImportError:
        pytest.skip("virtkit.images (the default image builder) is not in this checkout")
    return build_image("tiny")


@pytest.fixture
def vkd(image: Any) -> Iterator[Daemon]:
    with tempfile.TemporaryDirectory(prefix="vkd-", dir="/tmp") as h, \
            running_daemon(Path(h), images=Path(image.kernel).parent.parent) as d:
        yield d


def spec(image: Any, name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "engine": "qemu", "memory": 256,
            "boot": {"kernel": str(image.kernel), "initrd": str(image.initrd)}, **kw}


def _wait(pred: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.2)


def test_full_lifecycle_with_a_real_guest(vkd: Daemon, image: Any) -> None:
    c = vkd.client()
    c.define(spec(image, "life", vcpus=1))
    i = c.start("life")
    assert i.state == "running" and i.engine == "qemu" and i.technique
    c.wait_agent("life", 180)
    r = c.exec("life", ["uname", "-r"])
    assert r.exitcode == 0 and r.stdout.strip() == image.kernel_version
    assert any(x.name == "lo" and "127.0.0.1/8" in x.addresses for x in c.interfaces("life"))
    st = c.stats("life")
    assert st.cpu_time_s and st.cpu_time_s > 0 and st.memory_used_bytes and st.memory_used_bytes > 64 << 20
    info = c.info("life")
    assert info.uptime_s and info.uptime_s > 0 and info.cpu_time_s
    text, _ = c.console("life")
    assert "virtkit: ready" in text
    with c.console_connect("life") as ws:  # the guest's shell on its serial console, through the API
        ws.send(b"echo con$((6*7))sole\n")
        got = b""
        deadline = time.monotonic() + 60
        while b"con42sole" not in got and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                got += ws.recv(timeout=5)
        assert b"con42sole" in got
    assert c.suspend("life").state == "paused"
    cpu_paused = c.stats("life").cpu_time_s
    assert c.resume("life").state == "running"
    assert c.exec("life", ["true"]).exitcode == 0
    assert cpu_paused is not None
    before = float(c.exec("life", ["cat", "/proc/uptime"]).stdout.split()[0])
    c.reboot("life")  # asynchronous, like virsh: wait for the second boot on the console
    _wait(lambda: c.console("life")[0].count("virtkit: ready") >= 2, 180)
    c.wait_agent("life", 180)
    up = float(c.exec("life", ["cat", "/proc/uptime"]).stdout.split()[0])
    assert up < before + 5  # a fresh kernel: the uptime started again
    assert c.shutdown("life", timeout=60).state == "shut off"
    assert c.info("life").engine_pid is None
    assert c.start("life").state == "running"
    assert c.destroy("life").state == "shut off"
    c.undefine("life")


def test_reattach_crash_isolation_and_cgroups_with_three_guests(vkd: Daemon, image: Any) -> None:
    c = vkd.client()
    names = ["g1", "g2", "g3"]
    for n, cpus in zip(names, (0.5, 1.0, 1.5), strict=True):
        c.define(spec(image, n, limits={"cpus": cpus, "memory_mib": 768}))
        c.start(n)
    for n in names:
        c.wait_agent(n, 240)
    pids = {n: c.info(n).engine_pid for n in names}

    if cgroups.version() is not None and os.geteuid() == 0:
        for n, quota in zip(names, ("50000", "100000", "150000"), strict=True):
            g = cgroups.VmCgroup(n, parent=vkd.cgroup_parent)
            assert pids[n] in g.pids()  # QEMU itself runs inside the VM's cgroup
            lim = g.limits()
            if g.version == 1:
                assert lim["cpu.cfs_quota_us"] == quota and lim["memory.limit_in_bytes"] == str(768 << 20)
            else:
                assert lim["cpu.max"] == f"{quota} 100000" and lim["memory.max"] == str(768 << 20)

    # kill -9 the daemon while the three guests run; a new one re-attaches to all of them
    vkd.kill(signal.SIGKILL)
    for pid in pids.values():
        assert pid and Path(f"/proc/{pid}").exists()
    vkd.start()
    c = vkd.client()
    assert {d.name: d.state for d in c.list()} == dict.fromkeys(names, "running")
    for n in names:
        assert c.info(n).engine_pid == pids[n]
        assert c.exec(n, ["echo", n]).stdout.strip() == n
    assert c.suspend("g1").state == "paused" and c.resume("g1").state == "running"

    # kill -9 one guest's QEMU: reported crashed; the others keep answering their agents
    os.kill(pids["g2"], signal.SIGKILL)
    _wait(lambda: c.info("g2").state == "crashed")
    for n in ("g1", "g3"):
        assert c.exec(n, ["echo", "alive"]).stdout.strip() == "alive"
    # the supervisor reports "crashed" while it still cleans up; the daemon lets go of it once it has exited
    _wait(lambda: c.host().running == 2, timeout=15)

    # 20 concurrent API clients against the live guests: agent exec, list, dominfo, domstats
    errors: list[BaseException] = []

    def client_work(i: int) -> None:
        try:
            with vkd.client() as cc:
                n = ("g1", "g3")[i % 2]
                assert cc.exec(n, ["echo", str(i)]).stdout.strip() == str(i)
                assert {d.name for d in cc.list()} == {"g1", "g3"}
                assert cc.info(n).state == "running"
                assert cc.stats(n).cpu_time_s
        except BaseException as e:
            errors.append(e)

    workers = [threading.Thread(target=client_work, args=(i,)) for i in range(20)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(300)
    assert not errors, errors
    assert c.destroy("g2").state == "shut off"
    for n in ("g1", "g3"):
        c.destroy(n)


def vk(d: Daemon, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "VIRTKIT_HOME": str(d.home),
           "VIRTKIT_SOCKET": str(d.socket), "VIRTKIT_CGROUP_PARENT": d.cgroup_parent, "COLUMNS": "200",
           "VIRTKIT_NO_DAEMON_AUTOSTART": "1"}
    return subprocess.run([sys.executable, "-m", "virtkit.cli.vm", *args], capture_output=True, text=True,
                          env=env, timeout=600, input=stdin)


def test_cli_launch_exec_shell_console(vkd: Daemon) -> None:
    r = vk(vkd, "launch", "cl", "--engine", "qemu", "--memory", "256M", "--timeout", "240")
    assert r.returncode == 0, r.stderr
    assert "Launched: cl" in r.stdout
    r = vk(vkd, "exec", "cl", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (r.returncode, r.stdout, r.stderr) == (7, "out\n", "err\n")
    r = vk(vkd, "shell", "cl", stdin="cd /proc\npwd\nhead -c 5 version\n")
    assert r.returncode == 0 and "/proc" in r.stdout and "Linux" in r.stdout
    r = vk(vkd, "console", "cl", "--log")
    assert r.returncode == 0 and len(r.stdout) > 0
    assert vk(vkd, "destroy", "cl").returncode == 0


def test_snapshots_memory_in_qcow2_and_disk_only_on_raw(vkd: Daemon, image: Any, tmp_path: Path) -> None:
    qcow = tmp_path / "d.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow), "32M"], check=True)
    raw = tmp_path / "r.raw"
    raw.write_bytes(b"\0" * (4 << 20))
    c = vkd.client()
    c.define(spec(image, "mem", disks=[{"path": str(qcow), "format": "qcow2"}]))
    c.define(spec(image, "dsk", disks=[{"path": str(raw), "format": "raw"}]))
    for n in ("mem", "dsk"):
        c.start(n)
    for n in ("mem", "dsk"):
        c.wait_agent(n, 240)

    # memory + disk (internal qcow2 snapshot): a file in the guest's RAM-backed root comes back
    assert c.exec("mem", ["sh", "-c", "echo one > /mark"]).exitcode == 0
    s = c.snapshot_create("mem", "m1", "with memory")
    assert s.memory and s.state == "running"
    assert c.exec("mem", ["sh", "-c", "echo two > /mark"]).exitcode == 0
    assert c.snapshot_revert("mem", "m1").state == "running"
    assert c.exec("mem", ["cat", "/mark"]).stdout.strip() == "one"
    c.snapshot_delete("mem", "m1")
    assert c.snapshot_list("mem") == []

    # disk only (a raw disk cannot hold memory): the disk's content comes back, the guest reboots
    w = "printf {} | dd of=/dev/vda bs=4 count=1 conv=fsync 2>/dev/null"
    assert c.exec("dsk", ["sh", "-c", w.format("AAAA")]).exitcode == 0
    s = c.snapshot_create("dsk", "d1")
    assert not s.memory
    assert c.exec("dsk", ["sh", "-c", w.format("BBBB")]).exitcode == 0
    assert c.snapshot_revert("dsk", "d1").state == "running"
    c.wait_agent("dsk", 240)
    r = c.exec("dsk", ["sh", "-c", "dd if=/dev/vda bs=4 count=1 2>/dev/null"])
    assert r.stdout == "AAAA"
    for n in ("mem", "dsk"):
        c.destroy(n)


def test_domain_boots_from_a_disk(vkd: Daemon, tmp_path: Path) -> None:
    """boot.disk: firmware loads the disk's boot sector (tests/guests/bootsector.S prints a marker)."""
    import shutil
    import subprocess

    if shutil.which("gcc") is None or shutil.which("ld") is None:
        pytest.skip("gcc and binutils are needed for the boot sector")
    src = Path(__file__).resolve().parents[1] / "guests" / "bootsector.S"
    subprocess.run(["gcc", "-c", "-m32", "-o", tmp_path / "bs.o", src], check=True)
    subprocess.run(
        ["ld", "-m", "elf_i386", "-Ttext", "0x7c00", "--oformat", "binary", "-o", tmp_path / "bs.bin", tmp_path / "bs.o"],
        check=True,
    )
    disk = tmp_path / "boot.raw"
    disk.write_bytes((tmp_path / "bs.bin").read_bytes() + bytes(1 << 20))
    c = vkd.client()
    c.define({"name": "diskboot", "boot": {"disk": str(disk)}, "agent": False})
    assert c.start("diskboot").state == "running"
    _wait(lambda: "virtkit: booted from disk" in c.console("diskboot")[0], 60)
    c.destroy("diskboot")
    c.undefine("diskboot")
