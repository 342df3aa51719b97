"""The ACPI side of PCI and SMP: the DSDT's PCI root bridge (AML we generate) and the MADT, checked by
disassembling them with iasl, and read back the way Linux reads them."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from virtkit.arch.x86_64 import acpi, aml
from virtkit.machine.pci_devices import dsdt_aml, routing

needs_iasl = pytest.mark.skipif(shutil.which("iasl") is None, reason="iasl (acpica-tools) is not installed")


def disassemble(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / f"{name}.dat"
    path.write_bytes(data)
    result = subprocess.run(["iasl", "-d", str(path)], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    dsl = path.with_suffix(".dsl").read_text()
    assert "Invalid" not in dsl and "Incorrect checksum" not in dsl + result.stdout + result.stderr
    return dsl


@pytest.mark.parametrize(
    ("length", "encoded"),
    [(0, b"\x01"), (62, b"\x3f"), (63, b"\x41\x04"), (4093, b"\x4f\xff"), (4094, b"\x81\x00\x01")],
)
def test_pkg_length_counts_itself(length: int, encoded: bytes) -> None:
    assert aml.pkg_length(length) == encoded


def test_eisa_id_matches_iasl() -> None:
    assert aml.eisa_id("PNP0A03") == b"\x0c\x41\xd0\x0a\x03"


@needs_iasl
def test_dsdt_describes_the_pci_root_bridge(tmp_path: Path) -> None:
    dsl = disassemble(tmp_path, "dsdt", acpi.dsdt(dsdt_aml()))
    assert 'Name (_HID, EisaId ("PNP0A03")' in dsl
    assert "0xE0000000,         // Range Minimum" in dsl and "0xEFFFFFFF,         // Range Maximum" in dsl
    assert "0x0CF8,             // Range Minimum" in dsl
    entries = re.findall(r"0x00(\w\w)FFFF,\s+Zero,\s+Zero,\s+(0x\w+|One)", dsl)
    assert {int(slot, 16): int(gsi, 16) for slot, gsi in entries} == routing()
    assert "Name (_S5, Package (0x04)" in dsl


@needs_iasl
def test_madt_lists_every_vcpu_and_the_ioapic(tmp_path: Path) -> None:
    tables = dict(acpi.acpi_tables(0x600, 0x604, dsdt_aml(), cpus=4))
    xsdt = tables[acpi.XSDT_ADDRESS]
    pointers = struct.unpack_from(f"<{(len(xsdt) - 36) // 8}Q", xsdt, 36)
    madt = tables[pointers[1]]
    assert madt[:4] == b"APIC" and sum(madt) % 256 == 0
    dsl = disassemble(tmp_path, "apic", madt)
    assert re.findall(r"Local Apic ID : (\w+)", dsl) == ["00", "01", "02", "03"]
    assert "Address : FEC00000" in dsl
    assert sorted(int(s, 16) for s in re.findall(r"Source : (\w+)", dsl)) == [9, 10, 11]
    for address, data in tables.items():
        assert address >= 0xF0000 and address + len(data) <= 0x100000


def test_one_vcpu_has_no_madt() -> None:
    tables = dict(acpi.acpi_tables(0x600, 0x604, dsdt_aml()))
    assert not any(d[:4] == b"APIC" for d in tables.values())
