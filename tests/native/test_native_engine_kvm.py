"""The native engine through the engines interface: one VMM process per machine, controlled over its socket."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from virtkit.config.machine import BootSpec, MachineSpec
from virtkit.engines.base import Capability, Technique, VmState
from virtkit.engines.native import NativeEngine, NativeMachine
from virtkit.errors import ConfigError, GuestTimeout, HostError, Unsupported

REPO = Path(__file__).resolve().parents[2]


def wait_for(read: Callable[[], str], needle: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = read()
        if needle in text:
            return text
        time.sleep(0.02)
    raise AssertionError(f"{needle!r} never appeared:\n{read()}")


@pytest.fixture
def machines() -> Iterator[list[NativeMachine]]:
    started: list[NativeMachine] = []
    yield started
    for m in started:
        pid = m.pid
        m.destroy()
        assert pid is None or not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


def spec(kernel: Path, cmdline: str, memory_mib: int = 64) -> MachineSpec:
    return MachineSpec(name="native-test", memory_mib=memory_mib, boot=BootSpec(kernel=kernel, cmdline=cmdline))


def test_lifecycle_status_pause_resume_console_reboot_shutdown(
    kvm: object, test_kernels: dict[str, Path], tmp_path: Path, machines: list[NativeMachine]
) -> None:
    engine = NativeEngine()
    m = engine.start(spec(test_kernels["bzimage"], "echo powerbutton"), tmp_path / "run", die_with_parent=True)
    machines.append(m)
    assert m.engine == "native" and m.technique in (Technique.HARDWARE, Technique.PVM)
    assert m.pid is not None
    wait_for(m.console, "echo: ready")
    assert m.status() is VmState.RUNNING
    m.pause()
    assert m.status() is VmState.PAUSED
    m.resume()
    assert m.status() is VmState.RUNNING
    assert m.capabilities() == {Capability.CONSOLE_INPUT, Capability.STATS}
    assert m.console_write(b"ok") == 2
    wait_for(m.console, "echo: k\n")
    assert sum(m.stats().exits.values()) > 0
    with pytest.raises(Unsupported, match="native engine cannot save guest memory"):
        m.snapshot_save("s1")
    with pytest.raises(ConfigError, match="unknown control op 'warp'"):  # the VMM's own error, typed
        m.request("warp")
    m.reboot()
    wait_for(lambda: m.console().split("echo: k\n", 1)[-1], "echo: ready")
    assert m.request("status")["boots"] == 2
    # the agent's socket is there (virtio-console), but this test kernel runs no agent behind it
    assert m.agent_socket.is_socket()
    with pytest.raises(GuestTimeout, match="did not become ready"):
        m.wait_ready(1.0)
    m.shutdown(timeout=10)  # the ACPI power button: the guest powers itself off
    assert m.wait(10) is VmState.SHUTOFF
    assert m.pid is None
    assert m.console().count("virtkit-test: entry=linux64") == 2
    assert m.console().endswith("acpi: power button\nthen: poweroff\n")
    assert not (tmp_path / "run" / "control.sock").exists()


def test_console_socket_attaches_to_the_serial_port(
    kvm: object, test_kernels: dict[str, Path], tmp_path: Path, machines: list[NativeMachine]
) -> None:
    import socket

    m = NativeEngine().start(spec(test_kernels["pvh"], "echo"), tmp_path / "run", die_with_parent=True)
    machines.append(m)
    wait_for(m.console, "echo: ready")
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(m.console_socket))
        s.settimeout(10)
        s.sendall(b"z")
        got = b""
        while b"echo: z\n" not in got:
            got += s.recv(100)
    started = time.monotonic()
    m.shutdown(timeout=1)  # this guest ignores the power button: the VMM is stopped after the timeout
    assert time.monotonic() - started < 10
    assert m.status() is VmState.SHUTOFF


def test_guest_reset_with_exit_policy_ends_the_process_cleanly(
    kvm: object, test_kernels: dict[str, Path], tmp_path: Path
) -> None:
    # the VMM process reads its one JSON document from stdin ("-")
    doc = {"vmm": {"kernel": str(test_kernels["pvh"]), "cmdline": "reset", "memory_mib": 64, "on_reset": "exit"}}
    proc = subprocess.run(
        [sys.executable, "-m", "virtkit.engines.native_main", "-"], input=json.dumps(doc),
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "then: reset" in proc.stdout
    assert "reset: i8042 reset" in proc.stderr


def test_bad_input_gives_one_clear_error(kvm: object, test_kernels: dict[str, Path], tmp_path: Path) -> None:
    engine = NativeEngine()
    with pytest.raises(HostError, match="MiB available") as err:
        engine.start(spec(test_kernels["bzimage"], "x", memory_mib=1024 * 1024), tmp_path / "a")
    assert err.value.hint
    huge = tmp_path / "initrd"
    with huge.open("wb") as f:
        f.truncate(100 << 20)
    bad = dataclasses.replace(spec(test_kernels["bzimage"], "x"), boot=BootSpec(kernel=test_kernels["bzimage"], initrd=huge))
    with pytest.raises(ConfigError, match="does not fit"):
        engine.start(bad, tmp_path / "b")
    with pytest.raises(ConfigError, match="at most 2047"):
        engine.start(spec(test_kernels["bzimage"], "x" * 5000), tmp_path / "c")


def test_bad_input_found_by_the_vmm_itself_reaches_the_engine_typed(
    kvm: object, test_kernels: dict[str, Path], tmp_path: Path
) -> None:
    """The VMM's end report carries its error as a class with a hint, not a string to re-parse."""
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    report = tmp_path / "stats.json"
    document = json.dumps({"vmm": {"kernel": str(notes)}, "console": "none", "stats_json": str(report)})
    proc = subprocess.run(
        [sys.executable, "-m", "virtkit.engines.native_main", document],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "not a kernel" in proc.stderr  # for people
    machine = NativeMachine("m", Technique.PVM, subprocess.Popen(["true"]), tmp_path)
    error = NativeEngine._failure(machine, proc.returncode)
    assert isinstance(error, ConfigError) and "machine m: " in error.message and "not a kernel" in error.message
    assert error.hint


def test_run_native_puts_the_console_on_the_terminal(kvm: object, test_kernels: dict[str, Path]) -> None:
    code = (
        "import sys; from pathlib import Path; from virtkit.cli.native import run_native; "
        f"sys.exit(run_native(Path({str(test_kernels['bzimage'])!r}), cmdline='echo reset', memory_mib=64, "
        "on_reset='exit'))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )  # fmt: skip
    try:
        assert proc.stdin is not None and proc.stdout is not None
        out = b""
        deadline = time.monotonic() + 30
        while b"echo: ready" not in out and time.monotonic() < deadline:
            out += os.read(proc.stdout.fileno(), 4096)  # the guest resets its FIFO at boot: type after that
        proc.stdin.write(b"hiq")
        proc.stdin.flush()
        rest, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert b"echo: h\necho: i\necho: q\n" in out + rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_virtkit_run_engine_native_boots_with_console_on_terminal(kvm: object, test_kernels: dict[str, Path]) -> None:
    """`virtkit run --engine native --kernel K` as a user types it: console output on stdout, exit 0 on poweroff."""
    proc = subprocess.run(
        [sys.executable, "-m", "virtkit", "run", "--engine", "native", "--kernel", str(test_kernels["bzimage"]), "--memory", "64", "--cmdline", "console=ttyS0 from-the-cli poweroff"],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert b"cmdline: console=ttyS0 from-the-cli poweroff" in proc.stdout
    assert b"then: poweroff" in proc.stdout
