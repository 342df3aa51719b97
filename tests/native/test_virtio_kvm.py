"""virtio-pci on the native VMM, seen from a test kernel on /dev/kvm: enumeration through 0xCF8/0xCFC, a
virtio-rng round trip with an MSI-X interrupt, and a hostile driver that cannot crash or hang the VMM."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from native_harness import Boot

from virtkit.machine.config import Outcome
from virtkit.machine.vcpu import VcpuState

RNG_OK = re.compile(r"virtio-rng: status=0x0f used=1 bytes=64 nonzero=1 msi=1\n")


def test_pci_enumeration_and_rng_round_trip(boot: Callable[..., Boot], test_kernels: dict[str, Path]) -> None:
    b = boot(test_kernels["bzimage"], "console=ttyS0 virtio reset", on_reset="exit")
    outcome = b.wait(60)
    text = b.text()
    assert outcome == Outcome("reset", "i8042 reset"), text
    assert "pci: 00:0x00.0 0x8086:0x1237 class=0x060000\n" in text  # the host bridge
    assert "pci: 00:0x01.0 0x1af4:0x1044 class=0xff0000\n" in text  # virtio-rng, modern id
    assert "virtio: bar0=0xe0000000 notify_mult=4 caps=ok\n" in text
    assert RNG_OK.search(text), text
    stats = b.runner.last_statistics
    assert stats is not None and stats.device_errors == 0


def test_without_virtio_rng_the_bus_has_only_the_host_bridge(
    boot: Callable[..., Boot], test_kernels: dict[str, Path]
) -> None:
    b = boot(test_kernels["bzimage"], "console=ttyS0 virtio reset", on_reset="exit", virtio_rng=False)
    assert b.wait(60).kind == "reset"
    assert "virtio: no rng\n" in b.text() and "0x1af4" not in b.text()


@pytest.mark.timeout(180)
def test_hostile_driver_only_gets_the_device_reset(boot: Callable[..., Boot], test_kernels: dict[str, Path]) -> None:
    b = boot(test_kernels["bzimage"], "console=ttyS0 virtio-hostile reset", on_reset="exit")
    outcome = b.wait(150)
    text = b.text()
    assert outcome == Outcome("reset", "i8042 reset"), text
    for case in ("loop", "outside-ram", "oversize", "avail-jump", "wrong-direction", "bad-next"):
        # the driver brought the device up, offered the bad chain: DEVICE_NEEDS_RESET, nothing used
        assert f"hostile: {case} start=0x0f status=0x4f used=0\n" in text, text
    assert "hostile: rings-outside-ram start=0x4f status=0x4f used=0\n" in text, text
    assert "hostile: garbage done\n" in text
    # and after a reset the device works again
    assert re.search(r"hostile: after: status=0x0f used=1 bytes=64 nonzero=1 msi=1\n", text), text
    stats = b.runner.last_statistics
    assert stats is not None and stats.device_errors == 0


def test_virtio_console_handshake_and_agent_port_echo(
    boot: Callable[..., Boot], test_kernels: dict[str, Path], tmp_path: Path
) -> None:
    """The test kernel does Linux's MULTIPORT handshake, then echoes what arrives on the agent port; the
    host side is the unix socket AgentClient uses."""
    sock_path = tmp_path / "agent.sock"
    b = boot(test_kernels["bzimage"], "console=ttyS0 vconsole reset", on_reset="exit", agent_socket=sock_path)
    b.wait_for("vconsole: ready", 60)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(sock_path))
        s.sendall(b"ping\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(100)
            assert chunk, f"the agent socket closed:\n{b.text()}"
            reply += chunk
    assert reply == b"echo:ping\n"
    assert b.wait(60) == Outcome("reset", "i8042 reset")
    text = b.text()
    assert "pci: 00:0x01.0 0x1af4:0x1043 class=0x078000\n" in text  # virtio-console, before virtio-rng
    assert "vconsole: queues=6 max_nr_ports=2\n" in text
    assert "vconsole: port1 name=org.qemu.guest_agent.0\n" in text
    assert "hvc0 says hi" in text  # port 0, the console port, reaches the console log
    assert "vconsole: got 5 bytes\n" in text
    assert not sock_path.exists()  # the VMM removed its socket when it ended


def test_two_vcpus_pause_and_resume_together(boot: Callable[..., Boot], test_kernels: dict[str, Path]) -> None:
    """With --vcpus 2 the second vCPU waits for INIT/SIPI inside KVM_RUN (the test kernel never starts it);
    pause must still kick and park both threads, and resume must restart both."""
    b = boot(test_kernels["bzimage"], "echo reset", on_reset="exit", vcpus=2)
    b.wait_for("echo: ready")
    vmm = b.runner._vmm
    assert vmm is not None and len(vmm.threads) == 2
    started = time.monotonic()
    b.runner.pause()
    assert time.monotonic() - started < 2.0
    assert b.runner.state == "paused" and all(t.state is VcpuState.PAUSED for t in vmm.threads)
    b.runner.send_input(b"p")
    time.sleep(0.3)
    assert "echo: p" not in b.text()
    b.runner.resume()
    b.wait_for("echo: p\n")
    assert all(t.state is VcpuState.RUNNING for t in vmm.threads)
    b.runner.send_input(b"q")
    assert b.wait().kind == "reset"


def test_agent_socket_stays_connected_across_a_guest_reboot(
    boot: Callable[..., Boot], test_kernels: dict[str, Path], tmp_path: Path
) -> None:
    sock_path = tmp_path / "agent.sock"
    b = boot(test_kernels["bzimage"], "console=ttyS0 vconsole reset", on_reset="restart", agent_socket=sock_path)
    b.wait_for("vconsole: ready", 60)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(sock_path))
        for word, boots in ((b"ping", 1), (b"pong", 2)):
            deadline = time.monotonic() + 60
            while b.text().count("vconsole: ready") < boots:
                assert time.monotonic() < deadline, b.text()
                time.sleep(0.01)
            s.sendall(word + b"\n")
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = s.recv(100)
                assert chunk, f"the agent socket closed:\n{b.text()}"
                reply += chunk
            assert reply == b"echo:" + word + b"\n"  # the second answer comes from the rebooted guest
    assert b.runner.boots >= 2
    b.runner.stop()
    assert b.wait(20).kind == "stopped"
    assert not sock_path.exists()
