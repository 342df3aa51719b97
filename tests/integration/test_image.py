"""The real tiny image: built from Debian packages, booted under plain QEMU (TCG), driven through qemu-ga.

Needs apt (Debian), network access to the Debian mirror for the first build, and qemu-system-x86_64.
Prints boot-to-ready times (run with -s to see them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from virtkit.agent.client import AgentClient
from virtkit.images import Image, build_image, list_images, store
from virtkit.images import cpio as cpio_mod

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs qemu-system-x86_64"),
    pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt to build the image"),
]

READY = b"virtkit: ready"
CMDLINE = "console=ttyS0 quiet panic=-1"


@dataclass
class BuiltImage:
    image: Image
    home: Path
    cold_s: float


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltImage]:
    home = tmp_path_factory.mktemp("virtkit-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VIRTKIT_HOME", str(home))
        start = time.monotonic()
        img = build_image("tiny")
        cold = time.monotonic() - start
        print(
            f"\n[tiny] cold build {cold:.1f}s, kernel {img.kernel_version}, "
            f"initrd {img.initrd.stat().st_size / 2**20:.1f} MiB, total {img.size_bytes / 2**20:.1f} MiB"
        )
        yield BuiltImage(img, home, cold)


@dataclass
class Guest:
    proc: subprocess.Popen[bytes]
    dir: Path
    agent_sock: Path
    qmp_sock: Path
    console_sock: Path
    serial_log: Path
    started: float

    def console(self) -> bytes:
        try:
            return self.serial_log.read_bytes()
        except FileNotFoundError:
            return b""

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Seconds from QEMU's start until the guest printed its ready marker."""
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if READY in self.console():
                return time.monotonic() - self.started
            if self.proc.poll() is not None:
                pytest.fail(
                    f"QEMU exited ({self.proc.returncode}) before ready; console:\n"
                    f"{self.console()[-3000:].decode(errors='replace')}"
                )
            time.sleep(0.1)
        pytest.fail(f"no ready marker within {timeout}s; console:\n{self.console()[-3000:].decode(errors='replace')}")

    def wait_exit(self, timeout: float) -> float:
        start = time.monotonic()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"QEMU still running {timeout}s later; console tail:\n{self.console()[-2000:].decode(errors='replace')}"
            )
        return time.monotonic() - start


@contextlib.contextmanager
def boot(img: Image, workdir: Path, netdev: str, append: str = CMDLINE) -> Iterator[Guest]:
    workdir.mkdir(parents=True, exist_ok=True)
    agent_sock, qmp_sock = workdir / "qga.sock", workdir / "qmp.sock"
    console_sock, serial_log = workdir / "console.sock", workdir / "serial.log"
    argv = [
        "qemu-system-x86_64",
        "-machine",
        "pc,accel=tcg",
        "-m",
        "256",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-kernel",
        str(img.kernel),
        "-initrd",
        str(img.initrd),
        "-append",
        append,
        "-chardev",
        f"socket,id=ser0,path={console_sock},server=on,wait=off,logfile={serial_log}",
        "-serial",
        "chardev:ser0",
        "-chardev",
        f"socket,id=qga0,path={agent_sock},server=on,wait=off",
        "-device",
        "virtio-serial-pci",
        "-device",
        "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
        "-device",
        "virtio-rng-pci",
        "-netdev",
        netdev,
        "-device",
        "virtio-net-pci,netdev=n0",
        "-qmp",
        f"unix:{qmp_sock},server=on,wait=off",
    ]
    with open(workdir / "qemu.stderr", "wb") as stderr:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    g = Guest(proc, workdir, agent_sock, qmp_sock, console_sock, serial_log, time.monotonic())
    try:
        yield g
    finally:
        if g.proc.poll() is None:
            os.kill(g.proc.pid, signal.SIGKILL)
            g.proc.wait(10)


def _qmp(sock: Path, command: str) -> None:
    from qemu.qmp import QMPClient

    async def go() -> None:
        qmp = QMPClient("virtkit-test")
        await qmp.connect(str(sock))
        try:
            await qmp.execute(command)
        finally:
            await qmp.disconnect()

    asyncio.run(go())


def test_image_contents(built: BuiltImage) -> None:
    img = built.image
    assert img.kernel_version.endswith("-cloud-amd64")
    names = set(cpio_mod.read_names(img.initrd))
    for must in (
        "init",
        "bin/busybox",
        "bin/sh",
        "sbin/acpid",
        "sbin/udhcpc",
        "sbin/shutdown",
        "usr/sbin/qemu-ga",
        "lib64/ld-linux-x86-64.so.2",
        "lib/x86_64-linux-gnu/libglib-2.0.so.0",
        "lib/x86_64-linux-gnu/libc.so.6",
        "etc/acpi/PWRF/00000080",
        "usr/share/udhcpc/default.script",
        "dev/console",
        "etc/virtkit/modules",
    ):
        assert must in names, must
    mods = [n for n in names if n.endswith(".ko")]
    for m in (
        "virtio_ring",
        "virtio",
        "virtio_pci",
        "virtio_console",
        "virtio_blk",
        "virtio_net",
        "virtio-rng",
        "net_failover",
        "failover",
        "button",
        "evdev",
    ):
        assert any(n.endswith(f"/{m}.ko") for n in mods), m
    assert img.initrd.stat().st_size < 8 * 2**20  # "tiny": measured ~3.7 MiB
    manifest = json.loads((img.kernel.parent / store.MANIFEST).read_text())
    assert manifest["inputs"]["packages"]["qemu-guest-agent"]
    assert manifest["artifacts"]["initrd.img"]["size"] == img.initrd.stat().st_size


def test_warm_build_reuses_the_cache(built: BuiltImage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIRTKIT_HOME", str(built.home))
    start = time.monotonic()
    again = build_image("tiny")
    warm = time.monotonic() - start
    print(f"\n[tiny] warm build_image {warm * 1000:.0f} ms (cold {built.cold_s:.1f}s)")
    assert again == built.image
    assert warm < 5.0
    assert built.image in list_images()


def test_boot_agent_console_and_guest_shutdown(built: BuiltImage, tmp_path: Path) -> None:
    img = built.image
    with boot(img, tmp_path / "vm", "user,id=n0") as g:
        ready = g.wait_ready()
        print(f"\n[tiny] boot-to-ready under TCG (user net, DHCP): {ready:.1f}s")
        # The marker has a console line of its own (the shell waits for it), so line matchers see it.
        assert re.search(rb"(^|\n)virtkit: ready\r?\n", g.console())
        with AgentClient(g.agent_sock, timeout=30) as agent:
            agent.wait_ready(30, alive=lambda: g.proc.poll() is None)
            agent.ping()
            res = agent.exec(["uname", "-r"])
            assert res.ok and res.stdout.decode().strip() == img.kernel_version
            assert agent.exec(["cat", "/etc/hostname"]).stdout == b"virtkit\n"
            # DHCP runs in the background; slirp hands out 10.0.2.15.
            deadline = time.monotonic() + 30
            while True:
                ifaces = {i["name"]: i for i in agent.network_interfaces()}
                assert "eth0" in ifaces
                addrs = {a["ip-address"] for a in ifaces["eth0"].get("ip-addresses", [])}
                if "10.0.2.15" in addrs or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert "10.0.2.15" in addrs
            assert agent.exec(["sh", "-c", "ip route | grep default"]).stdout.startswith(b"default via 10.0.2.2")
            # A second lease (as on renewal) through the shipped hook leaves one address and the route.
            again = agent.exec(["udhcpc", "-i", "eth0", "-n", "-q", "-s", "/usr/share/udhcpc/default.script"])
            assert again.ok, again.stderr
            show = agent.exec(["sh", "-c", "ip -4 addr show dev eth0; ip route"]).stdout.decode()
            assert show.count("inet 10.0.2.15/24") == 1 and "default via 10.0.2.2" in show, show
            assert b"nameserver 10.0.2.3" in agent.exec(["cat", "/etc/resolv.conf"]).stdout
            # The rng device is bound: the kernel lists virtio_rng as its hardware RNG.
            rng = agent.exec(["cat", "/sys/class/misc/hw_random/rng_available"]).stdout
            assert b"virtio_rng" in rng

            # The console runs a shell; typed commands answer, and it comes back after `exit`.
            with socket.socket(socket.AF_UNIX) as con:
                con.connect(str(g.console_sock))
                con.sendall(b"echo sum=$((6*7))\n")
                _wait_console(g, b"sum=42")
                con.sendall(b"exit\n")
                time.sleep(1.0)
                con.sendall(b"echo again=$((7*7))\n")
                _wait_console(g, b"again=49")

            agent.shutdown("powerdown")
        took = g.wait_exit(30)
        print(f"[tiny] guest-shutdown -> QEMU exit in {took:.1f}s")
        assert g.proc.returncode == 0


def _wait_console(g: Guest, needle: bytes, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while needle not in g.console():
        if time.monotonic() > deadline:
            pytest.fail(f"{needle!r} not on the console; tail:\n{g.console()[-1500:].decode(errors='replace')}")
        time.sleep(0.1)


def test_power_button_without_dhcp_hostname_and_module_params(built: BuiltImage, tmp_path: Path) -> None:
    """A NIC on an empty hub (no DHCP server) must not delay readiness; system_powerdown powers off."""
    append = f"{CMDLINE} virtkit.hostname=probe-1 virtio_net.napi_tx=0"
    with boot(built.image, tmp_path / "vm", "hubport,id=n0,hubid=0", append) as g:
        ready = g.wait_ready()
        print(f"\n[tiny] boot-to-ready under TCG (no DHCP): {ready:.1f}s")
        with AgentClient(g.agent_sock, timeout=30) as agent:
            agent.wait_ready(30, alive=lambda: g.proc.poll() is None)
            assert "eth0" in {i["name"] for i in agent.network_interfaces()}
            assert agent.call("guest-get-host-name")["host-name"] == "probe-1"
            # module.param=value from the command line reaches modules loaded by insmod
            napi = agent.exec(["cat", "/sys/module/virtio_net/parameters/napi_tx"]).stdout
            assert napi == b"N\n"
        _qmp(g.qmp_sock, "system_powerdown")
        took = g.wait_exit(20)
        print(f"[tiny] system_powerdown -> QEMU exit in {took:.1f}s")
        assert g.proc.returncode == 0
        assert b"Requesting system poweroff" in g.console()  # busybox init's orderly shutdown ran


def test_ctrl_c_during_a_build_leaves_the_cache_as_it_was(built: BuiltImage) -> None:
    """SIGINT to `virtkit image build --force` mid-build: exit 130, no half entry, the old entry intact."""
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "VIRTKIT_HOME": str(built.home), "PYTHONPATH": str(repo / "src")}
    images = built.home / "images"
    proc = subprocess.Popen(
        [sys.executable, "-m", "virtkit.cli.main", "image", "build", "--force"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # a terminal's Ctrl-C reaches the whole group: so does this
    )
    try:
        deadline = time.monotonic() + 60
        # Wait until the build is unpacking packages (the work directory has a root/ tree).
        while not list(images.glob(".build-*/root/*")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the build never started unpacking"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err.decode()
    assert b"interrupted" in err
    assert list(images.glob(".build-*")) == []
    assert list(images.glob(".dl-*")) == []
    assert store.load(built.image.kernel.parent) == built.image  # still valid, not rebuilt
