"""Firmware boot from a disk (raw and qcow2) on the QEMU engine: SeaBIOS loads our boot sector."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from virtkit.config.machine import BootSpec, MachineSpec
from virtkit.engines.qemu import QemuEngine
from virtkit.errors import ConfigError

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_leaked_qemu")]
SOURCE = Path(__file__).resolve().parents[1] / "guests" / "bootsector.S"
MARKER = "virtkit: booted from disk"


@pytest.fixture(scope="module")
def boot_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None or shutil.which("ld") is None or shutil.which("qemu-system-x86_64") is None:
        pytest.skip("gcc, binutils and QEMU are needed")
    d = tmp_path_factory.mktemp("bootdisk")
    subprocess.run(["gcc", "-c", "-m32", "-o", d / "bs.o", SOURCE], check=True)
    subprocess.run(
        ["ld", "-m", "elf_i386", "-Ttext", "0x7c00", "--oformat", "binary", "-o", d / "bs.bin", d / "bs.o"], check=True
    )
    sector = (d / "bs.bin").read_bytes()
    assert len(sector) == 512 and sector[-2:] == b"\x55\xaa"
    disk = d / "boot.raw"
    disk.write_bytes(sector + bytes(1024 * 1024 - 512))
    return disk


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_boot_from_disk(boot_disk: Path, tmp_path: Path, fmt: str) -> None:
    disk = boot_disk
    if fmt == "qcow2":
        disk = tmp_path / "boot.qcow2"
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", boot_disk, disk], check=True)
    spec = MachineSpec(name=f"diskboot-{fmt}", boot=BootSpec(disk=disk, disk_format=fmt), agent=False)  # type: ignore[arg-type]
    m = QemuEngine(accel="tcg").start(spec, tmp_path / "vm", die_with_parent=True)
    try:
        deadline = time.monotonic() + 60
        while MARKER not in m.console() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert MARKER in m.console(), m.console()[-500:]
    finally:
        m.destroy()


def test_kernel_and_disk_boot_exclude_each_other(boot_disk: Path) -> None:
    with pytest.raises(ValueError, match="exactly one of kernel and disk"):
        BootSpec(kernel=boot_disk, disk=boot_disk)
    with pytest.raises(ValueError, match="exactly one of kernel and disk"):
        BootSpec()


def test_native_engine_refuses_disk_boot_with_a_fix(boot_disk: Path, tmp_path: Path) -> None:
    from virtkit.engines.native import NativeEngine

    spec = MachineSpec(name="nd", boot=BootSpec(disk=boot_disk))
    with pytest.raises(ConfigError, match="no firmware") as info:
        NativeEngine().start(spec, tmp_path / "vm")
    assert info.value.hint and "--engine qemu" in info.value.hint
