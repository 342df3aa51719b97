"""Disk images through ``qemu-img`` (raw and qcow2): what a disk is, and whether it is sound."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from virtkit.errors import ConfigError, HostError

FORMATS = ("raw", "qcow2")


@dataclass(frozen=True)
class DiskInfo:
    path: Path
    format: str
    virtual_size: int
    actual_size: int


def _qemu_img() -> str:
    exe = shutil.which("qemu-img")
    if exe is None:
        raise HostError("qemu-img not found", hint="apt-get install qemu-utils")
    return exe


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown error"


def inspect_disk(path: Path, expected_format: str | None = None) -> DiskInfo:
    """Read a disk's format and size; a damaged qcow2 raises ConfigError naming the disk and the fix."""
    if not path.is_file():
        raise ConfigError(f"disk {path} does not exist", hint="create it with qemu-img create or fix the path")
    fmt_args = ["-f", expected_format] if expected_format else []
    proc = subprocess.run(
        [_qemu_img(), "info", "--output=json", *fmt_args, str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if proc.returncode != 0:
        raise ConfigError(
            f"disk {path} is not a valid {expected_format or 'disk'} image: {_first_line(proc.stderr)}",
            hint=f"check it with `qemu-img check {path}` or give the right format",
        )
    info = json.loads(proc.stdout)
    fmt = info.get("format", "raw")
    if fmt == "qcow2":
        check = subprocess.run(
            [_qemu_img(), "check", "--output=json", "-f", "qcow2", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        # Exit 2: corruptions found; 1: the check itself failed (unreadable image).
        if check.returncode in (1, 2):
            detail = _first_line(check.stderr) if check.stderr.strip() else "corruptions found"
            raise ConfigError(
                f"disk {path} is a corrupt qcow2 image: {detail}",
                hint=f"repair it with `qemu-img check -r all {path}` or restore it from a backup",
            )
    return DiskInfo(path, fmt, int(info.get("virtual-size", 0)), int(info.get("actual-size", 0)))


def create_disk(path: Path, size: str, fmt: str = "qcow2") -> DiskInfo:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown disk format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
    proc = subprocess.run(
        [_qemu_img(), "create", "-q", "-f", fmt, str(path), size], capture_output=True, text=True, timeout=60
    )
    if proc.returncode != 0:
        raise ConfigError(f"cannot create disk {path}: {_first_line(proc.stderr)}")
    return inspect_disk(path, fmt)
