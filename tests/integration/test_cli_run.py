"""`virtkit run` end to end, as a user runs it: a subprocess, real guests, real signals."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from virtkit.config import defaults
from virtkit.storage.disks import create_disk

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_leaked_qemu")]


def virtkit(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "virtkit", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_default_run_prints_uname_cpu_free_engine_and_boot_time(cli_env: dict[str, str], tiny_image: object) -> None:
    p = virtkit(cli_env, "run")
    assert p.returncode == 0, p.stderr
    assert re.search(rf"^Linux \S+ {re.escape(tiny_image.kernel_version)} ", p.stdout, re.M)  # type: ignore[attr-defined]
    assert "Mem:" in p.stdout  # free -m
    assert "QEMU" in p.stdout or "EPYC" in p.stdout or "CPU" in p.stdout  # the CPU model line
    assert "engine: qemu" in p.stdout and "technique: binary translation (TCG)" in p.stdout
    assert "boot to agent-ready:" in p.stdout


def test_guest_exit_code_becomes_virtkits(cli_env: dict[str, str], tiny_image: object) -> None:
    p = virtkit(cli_env, "run", "--", "sh", "-c", "echo hi; echo bad >&2; exit 42")
    assert p.returncode == 42
    assert p.stdout == "hi\n"
    assert "bad" in p.stderr


def test_json_output(cli_env: dict[str, str], tiny_image: object) -> None:
    p = virtkit(cli_env, "run", "--json", "--", "uname", "-r")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["engine"] == "qemu"
    assert doc["results"][0]["stdout"].strip() == tiny_image.kernel_version  # type: ignore[attr-defined]


def test_ctrl_c_leaves_no_qemu_and_no_temp_files(cli_env: dict[str, str], tiny_image: object) -> None:
    run_dir = defaults.run_dir()
    before = set(run_dir.iterdir()) if run_dir.exists() else set()
    tmp_before = set(Path("/tmp").iterdir())
    proc = subprocess.Popen(
        [sys.executable, "-m", "virtkit", "run", "--", "sleep", "600"],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    qemu: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        # Interrupt while the guest runs the command (the agent is up: QEMU started a while ago).
        while time.monotonic() < deadline and not qemu:
            qemu = [c for c in psutil.Process(proc.pid).children(recursive=True) if "qemu" in c.name()]
            time.sleep(0.2)
        assert qemu, "virtkit run never started QEMU"
        time.sleep(8)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    for q in qemu:
        assert not q.is_running() or q.status() == psutil.STATUS_ZOMBIE
    after = set(run_dir.iterdir()) if run_dir.exists() else set()
    assert after <= before, f"run files left behind: {after - before}"
    leaked = {p for p in set(Path("/tmp").iterdir()) - tmp_before if "virtkit" in p.name}
    assert not leaked


# -- bad input: one clear line with the fix, non-zero exit, nothing left running ----------------------


def _one_error(p: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert p.returncode == 125, (p.returncode, p.stderr)
    first = p.stderr.strip().splitlines()[0]
    assert first.startswith("virtkit: error:"), p.stderr
    for n in needles:
        assert n in p.stderr, p.stderr
    assert "fix:" in p.stderr
    assert "Traceback" not in p.stderr


def test_unknown_image(cli_env: dict[str, str]) -> None:
    _one_error(virtkit(cli_env, "run", "--image", "nosuch"), "nosuch", "tiny")


def test_unknown_kernel_package(cli_env: dict[str, str], tmp_path: Path) -> None:
    env = {**cli_env, "VIRTKIT_HOME": str(tmp_path)}
    _one_error(virtkit(env, "image", "build", "--kernel-package", "linux-image-nonexistent-xyz"), "not found")


def test_qemu_missing(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "VIRTKIT_QEMU": "/nonexistent/qemu-system-x86_64"}
    _one_error(virtkit(env, "run", "--engine", "qemu"), "qemu-system-x86_64", "apt-get install qemu-system-x86")


def test_not_enough_memory(cli_env: dict[str, str], tiny_image: object) -> None:
    _one_error(virtkit(cli_env, "run", "--memory", str(900 * 1024)), "not enough memory", "--memory")


def test_corrupt_qcow2(cli_env: dict[str, str], tiny_image: object, tmp_path: Path) -> None:
    disk = tmp_path / "broken.qcow2"
    create_disk(disk, "16M", "qcow2")
    data = bytearray(disk.read_bytes())
    data[4:8] = b"\x00\x00\x00\x63"
    disk.write_bytes(bytes(data))
    _one_error(virtkit(cli_env, "run", "--disk", str(disk)), "broken.qcow2", "qemu-img check")


def test_guest_that_never_gets_ready_shows_console(cli_env: dict[str, str], tiny_image: object, tmp_path: Path) -> None:
    # A kernel with no usable init: it panics, and the error must show what the console said.
    p = virtkit(
        cli_env,
        "run",
        "--kernel",
        str(tiny_image.kernel),  # type: ignore[attr-defined]
        "--initrd",
        str(tiny_image.initrd),  # type: ignore[attr-defined]
        "--cmdline",
        "console=ttyS0 rdinit=/nonexistent panic=0",
        "--timeout",
        "20",
    )
    assert p.returncode == 124, p.stderr
    assert p.stderr.startswith("virtkit: error:")
    assert "last console lines" in p.stderr
    assert "rdinit" in p.stderr or "Kernel panic" in p.stderr or "init" in p.stderr


def test_keep_leaves_the_guest_running(cli_env: dict[str, str], tiny_image: object) -> None:
    p = virtkit(cli_env, "run", "--keep", "--", "true")
    assert p.returncode == 0, p.stderr
    assert "keeps running" in p.stderr
    pid = int(p.stderr.split("pid ")[1].split(")")[0])
    workdir = Path(p.stderr.split("run files in ")[1].split()[0])
    try:
        proc = psutil.Process(pid)
        assert "qemu-system" in proc.name()
        assert proc.is_running()
        assert (workdir / "console.log").exists()
    finally:
        proc = psutil.Process(pid)
        proc.kill()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
