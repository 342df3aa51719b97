"""The QEMU engine with real guests (the default image under TCG here)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from virtkit.engines.base import Capability, VmState
from virtkit.engines.qemu import QemuMachine
from virtkit.errors import EngineError, Unsupported

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_leaked_qemu")]

Boot = Callable[..., QemuMachine]


def test_exec_returns_the_guests_own_kernel(boot: Boot, tiny_image: object) -> None:
    m = boot()
    r = m.agent().exec(["uname", "-r"])
    assert r.exitcode == 0
    assert r.stdout.decode().strip() == tiny_image.kernel_version  # type: ignore[attr-defined]
    assert m.status() is VmState.RUNNING
    assert m.agent().exec(["uname", "-n"]).stdout.strip() == b"it"  # the machine's name is its hostname


def test_exit_codes_and_stderr_propagate(boot: Boot) -> None:
    r = boot().agent().exec(["sh", "-c", "echo out; echo problem >&2; exit 7"])
    assert (r.exitcode, r.stdout, r.stderr) == (7, b"out\n", b"problem\n")


def test_file_written_through_agent_reads_back(boot: Boot) -> None:
    agent = boot().agent()
    payload = os.urandom(100_000)
    agent.file_write("/tmp/blob", payload)
    assert agent.file_read("/tmp/blob") == payload
    assert agent.exec(["sh", "-c", "wc -c < /tmp/blob"]).stdout.strip() == b"100000"


def test_agent_info_and_interfaces(boot: Boot) -> None:
    agent = boot(nics=()).agent()
    names = {c["name"] for c in agent.info()["supported_commands"] if c["enabled"]}
    assert {"guest-exec", "guest-file-open", "guest-shutdown", "guest-network-get-interfaces"} <= names
    ifaces = {i["name"] for i in agent.network_interfaces()}
    assert "lo" in ifaces


def test_graceful_shutdown_powers_off_through_acpi(boot: Boot) -> None:
    m = boot()
    pid = m.pid
    assert pid is not None
    t0 = time.monotonic()
    m.shutdown(timeout=60)
    assert time.monotonic() - t0 < 55, "the guest ignored the ACPI power button and was destroyed"
    assert m.status() is VmState.SHUTOFF
    assert not psutil.pid_exists(pid)
    assert "terminating on signal" not in (m.workdir / "qemu.stderr").read_text()


def test_destroy_kills_the_process(boot: Boot) -> None:
    m = boot()
    pid = m.pid
    assert pid is not None
    m.destroy()
    assert not psutil.pid_exists(pid)
    assert m.status() is VmState.SHUTOFF
    m.destroy()  # idempotent


def _uptime(m: QemuMachine) -> float:
    return float(m.agent().exec(["cat", "/proc/uptime"]).stdout.split()[0])


def test_paused_guest_clock_does_not_advance(boot: Boot) -> None:
    m = boot()
    before = _uptime(m)
    m.pause()
    assert m.status() is VmState.PAUSED
    time.sleep(4)
    m.resume()
    assert m.status() is VmState.RUNNING
    advanced = _uptime(m) - before
    assert advanced < 2.5, f"guest clock advanced {advanced:.1f}s across a 4s pause"


def test_two_guests_and_destroying_one_leaves_the_other(boot: Boot) -> None:
    a = boot("alpha")
    b = boot("beta")
    assert a.pid != b.pid
    a.destroy()
    assert a.status() is VmState.SHUTOFF
    r = b.agent().exec(["echo", "still here"])
    assert r.stdout == b"still here\n"
    assert b.status() is VmState.RUNNING


def test_reattach_from_run_directory(boot: Boot) -> None:
    m = boot("adopted")
    m.detach()  # as if the process that started it had gone away
    again = QemuMachine.attach(m.workdir)
    assert again.pid == m.pid
    assert again.status() is VmState.RUNNING
    again.pause()
    assert again.status() is VmState.PAUSED
    again.resume()
    assert again.agent().exec(["true"]).exitcode == 0
    # typed into the serial console's shell; the arithmetic proves a shell ran it, not just the tty's echo
    assert again.console_write(b"echo con$((40+2))sole\n") == 22
    deadline = time.monotonic() + 30
    while "con42sole" not in again.console() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "con42sole" in again.console()
    again.destroy()
    assert m.wait(10) is VmState.SHUTOFF


def test_crash_is_reported(boot: Boot) -> None:
    m = boot("victim")
    pid = m.pid
    assert pid is not None
    psutil.Process(pid).kill()
    assert m.wait(10) is VmState.CRASHED


def test_virtio_disks_raw_and_qcow2(boot: Boot, tmp_path: Path) -> None:
    from virtkit.config.machine import DiskSpec
    from virtkit.storage.disks import create_disk

    raw = create_disk(tmp_path / "a.raw", "8M", "raw").path
    qcow = create_disk(tmp_path / "b.qcow2", "16M", "qcow2").path
    m = boot("disks", disks=(DiskSpec(path=raw), DiskSpec(path=qcow, format="qcow2")))
    agent = m.agent()
    sizes = agent.exec(["sh", "-c", "cat /sys/block/vda/size /sys/block/vdb/size"]).stdout.split()
    assert [int(s) * 512 for s in sizes] == [8 << 20, 16 << 20]
    w = agent.exec(["sh", "-c", "echo virtkit-was-here | dd of=/dev/vdb bs=512 count=1 conv=sync,fsync 2>&1"])
    assert w.exitcode == 0, w.stdout
    written = {b.device: b.wr_bytes for b in m.stats().block}  # devices by QOM path, e.g. /machine/peripheral/vd1/...
    assert sum(n or 0 for d, n in written.items() if "/vd1/" in d) >= 512, written
    assert Capability.SNAPSHOT not in m.capabilities()  # the raw disk cannot hold the memory
    with pytest.raises(Unsupported, match="a writable raw disk"):
        m.snapshot_save("s1")
    m.shutdown(timeout=60)
    assert b"virtkit-was-here" in _qcow2_first_sector(qcow)


def test_memory_snapshot_in_qcow2_through_the_machine(boot: Boot, tmp_path: Path) -> None:
    from virtkit.config.machine import DiskSpec
    from virtkit.storage.disks import create_disk

    qcow = create_disk(tmp_path / "m.qcow2", "16M", "qcow2").path
    m = boot("snap", disks=(DiskSpec(path=qcow, format="qcow2"),))
    assert Capability.SNAPSHOT in m.capabilities()
    agent = m.agent()
    assert agent.exec(["sh", "-c", "echo one > /mark"]).exitcode == 0
    m.pause()
    m.snapshot_save("s1")
    m.resume()
    assert agent.exec(["sh", "-c", "echo two > /mark"]).exitcode == 0
    m.pause()
    m.snapshot_load("s1")
    m.resume()
    m.agent().close()  # the restored guest's agent session starts afresh
    assert m.agent().exec(["cat", "/mark"]).stdout == b"one\n"
    m.snapshot_delete("s1")
    with pytest.raises(EngineError, match="s1"):
        m.snapshot_load("s1")


def _qcow2_first_sector(path: Path) -> bytes:
    import subprocess

    out = path.with_suffix(".dump")
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(path), str(out)], check=True)
    return out.read_bytes()[:512]


def test_user_mode_network_gets_an_address(boot: Boot) -> None:
    from virtkit.config.machine import NicSpec

    m = boot("usernet", nics=(NicSpec(kind="user"),))
    agent = m.agent()
    deadline = time.monotonic() + 30
    addrs: list[str] = []
    while time.monotonic() < deadline and "10.0.2.15" not in addrs:
        addrs = [
            a["ip-address"] for i in agent.network_interfaces() for a in i.get("ip-addresses", []) if i["name"] != "lo"
        ]
        time.sleep(0.5)
    assert "10.0.2.15" in addrs


def test_reboot_restarts_the_guest(boot: Boot) -> None:
    m = boot("rebooter")
    pid = m.pid
    m.agent().file_write("/tmp/before-reboot", b"x")
    m.reboot()
    m.wait_ready(120)
    assert m.pid == pid  # same QEMU process, new guest boot
    r = m.agent().exec(["test", "-e", "/tmp/before-reboot"])
    assert r.exitcode == 1, "the guest kept its tmpfs: it did not reboot"
