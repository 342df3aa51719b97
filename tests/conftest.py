"""Shared fixtures: the default image (built once per session, cached by content) and process helpers."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_image() -> object:
    """The default guest image, built (or reused from the cache) once per test session."""
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    from virtkit.images import build_image

    return build_image("tiny")


def _our_live_qemus(since: float, markers: tuple[str, ...]) -> list[psutil.Process]:
    """QEMU processes this test started: our descendants, or ones whose command line names our run paths
    (a `virtkit run --keep` child outlives the CLI that started it). Zombies are already dead."""
    mine = {p.pid for p in psutil.Process().children(recursive=True)}
    found = []
    for p in psutil.process_iter(["name", "cmdline", "create_time", "status"]):
        if "qemu-system" not in (p.info["name"] or "") or p.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmd = " ".join(p.info["cmdline"] or [])
        if p.pid in mine or (p.info["create_time"] >= since and any(m in cmd for m in markers)):
            found.append(p)
    return found


@pytest.fixture
def no_leaked_qemu(tmp_path: Path) -> Iterator[None]:
    """Fail a test that leaves a QEMU process behind, and end those (ours only, by pid)."""
    import time

    from virtkit.config import defaults

    since = time.time() - 1
    yield
    leaked = _our_live_qemus(since, (str(tmp_path), str(defaults.run_dir())))
    for p in leaked:
        p.kill()
    assert not leaked, f"QEMU processes left running: {[p.pid for p in leaked]}"


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for running the CLI as a subprocess with the checkout's sources."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["COLUMNS"] = "200"
    return env
