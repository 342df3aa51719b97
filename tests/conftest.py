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


def qemu_children(pid: int) -> list[psutil.Process]:
    """QEMU processes started by ``pid`` (directly or through a helper)."""
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [k for k in kids if "qemu-system" in (k.info.get("name") if hasattr(k, "info") else k.name())]


@pytest.fixture
def no_leaked_qemu() -> Iterator[None]:
    """Fail a test that leaves a QEMU process behind; end those it left (by pid: only ours)."""
    before = {p.pid for p in psutil.process_iter(["name"]) if "qemu-system" in (p.info["name"] or "")}
    yield
    leaked = [
        p for p in psutil.process_iter(["name"]) if "qemu-system" in (p.info["name"] or "") and p.pid not in before
    ]
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
