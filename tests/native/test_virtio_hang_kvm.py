"""Issue 17 on the local KVM: a test kernel performs the hang sequence (DRIVER_OK cleared without a reset,
then a 65535-entry queue flooded with chained zero-length descriptors all naming head 0) and then floods the
largest valid queue for ever, notifying without pause, while it echoes on the agent port. The VMM must stay
in charge: pause, resume, the control socket and the agent socket answer within a second, and destroy works."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from virtkit.config.machine import BootSpec, MachineSpec
from virtkit.engines.base import VmState
from virtkit.engines.native import NativeEngine, NativeMachine

ANSWER_S = 1.0


def wait_for(read: Callable[[], str], needle: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = read()
        if needle in text:
            return text
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} never appeared:\n{read()}")


def timed(what: str, action: Callable[[], object]) -> object:
    started = time.monotonic()
    result = action()
    elapsed = time.monotonic() - started
    assert elapsed < ANSWER_S, f"{what} took {elapsed:.2f} s under the flood"
    return result


def agent_echo(path: Path, word: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(ANSWER_S)
        s.connect(str(path))
        s.sendall(word + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(100)
            assert chunk, "the agent socket closed"
            reply += chunk
        return reply


@pytest.fixture
def machine(kvm: object, test_kernels: dict[str, Path], tmp_path: Path) -> Iterator[NativeMachine]:
    spec = MachineSpec(name="hang", memory_mib=64,
                       boot=BootSpec(kernel=test_kernels["bzimage"], cmdline="console=ttyS0 virtio-hang"))  # fmt: skip
    m = NativeEngine().start(spec, tmp_path / "run", die_with_parent=True)
    yield m
    pid = m.pid
    m.destroy()
    assert pid is None or not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


@pytest.mark.timeout(240)
def test_the_hang_sequence_leaves_the_vmm_answering(machine: NativeMachine) -> None:
    m = machine
    text = wait_for(m.console, "hang: flooding", 120)
    # the toggle flagged NEEDS_RESET and the 65535-entry queue was never taken
    assert "hang: toggled status=0x4f size=8 used=0\n" in text, text
    assert "hang: flooding status=0x0f\n" in text, text
    wait_for(m.console, "hang: rounds=8\n", 60)  # 8 x 256 chains of 256 descriptors served: the flood is on
    for word in (b"ping", b"pong"):
        assert timed("the agent socket", lambda w=word: agent_echo(m.agent_socket, w)) == b"echo:" + word + b"\n"  # type: ignore[misc]
    timed("the control socket", lambda: m.request("status"))
    timed("pause", m.pause)
    assert timed("status", m.status) is VmState.PAUSED
    timed("resume", m.resume)
    assert m.status() is VmState.RUNNING
    assert timed("the agent socket after resume", lambda: agent_echo(m.agent_socket, b"again")) == b"echo:again\n"
    rounds = m.console().count("hang: rounds=")
    wait_for(lambda: str(m.console().count("hang: rounds=") > rounds), "True", 60)  # and still going on
    assert "NEEDS_RESET" not in m.console()  # the flood on a valid queue is served, not refused
    pid = m.pid
    started = time.monotonic()
    m.destroy()
    assert time.monotonic() - started < 10
    assert m.status() is VmState.SHUTOFF
    assert pid is None or not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
