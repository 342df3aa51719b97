from __future__ import annotations

import itertools
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from virtkit.arch.x86_64 import acpi
from virtkit.devices.acpi_pm import PWRBTN_STS, SCI_EN, SLP_EN, AcpiPm
from virtkit.devices.trigger import RecordingTrigger

TABLES = dict(acpi.acpi_tables(0x600, 0x604))


def test_every_table_sums_to_zero_and_points_at_the_next() -> None:
    rsdp = TABLES[acpi.RSDP_ADDRESS]
    assert rsdp[:8] == b"RSD PTR " and sum(rsdp[:20]) % 256 == 0 and sum(rsdp) % 256 == 0
    xsdt_address = struct.unpack_from("<Q", rsdp, 24)[0]
    xsdt = TABLES[xsdt_address]
    assert xsdt[:4] == b"XSDT" and sum(xsdt) % 256 == 0
    fadt = TABLES[struct.unpack_from("<Q", xsdt, 36)[0]]
    assert fadt[:4] == b"FACP" and len(fadt) == 276 and sum(fadt) % 256 == 0
    assert struct.unpack_from("<II", fadt, 56) == (0x600, 0)  # PM1a_EVT, PM1b_EVT
    assert struct.unpack_from("<I", fadt, 64)[0] == 0x604
    assert struct.unpack_from("<I", fadt, 48)[0] == 0  # no SMI_CMD: always in ACPI mode
    assert not struct.unpack_from("<I", fadt, 112)[0] & (1 << 20)  # not hardware-reduced: the PIC stays
    facs = TABLES[struct.unpack_from("<I", fadt, 36)[0]]
    assert facs[:4] == b"FACS" and len(facs) == 64 and struct.unpack_from("<I", fadt, 36)[0] % 64 == 0
    dsdt = TABLES[struct.unpack_from("<Q", fadt, 140)[0]]
    assert dsdt[:4] == b"DSDT" and sum(dsdt) % 256 == 0 and b"_S5_" in dsdt


def test_tables_fit_in_the_reserved_bios_area() -> None:
    for address, data in TABLES.items():
        assert address >= 0xF0000 and address + len(data) <= 0x100000
    spans = sorted((a, a + len(d)) for a, d in TABLES.items())
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))


@pytest.mark.skipif(shutil.which("iasl") is None, reason="iasl (acpica-tools) is not installed")
@pytest.mark.parametrize("name", ["FACP", "DSDT", "XSDT", "FACS"])
def test_iasl_disassembles_the_tables_without_complaint(tmp_path: Path, name: str) -> None:
    data = next(d for d in TABLES.values() if d[:4] == name.encode())
    path = tmp_path / f"{name.lower()}.dat"
    path.write_bytes(data)
    result = subprocess.run(["iasl", "-d", str(path)], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    dsl = path.with_suffix(".dsl").read_text()
    assert "Invalid" not in dsl and "Incorrect checksum" not in dsl + result.stdout + result.stderr
    if name == "DSDT":
        assert "Name (_S5, Package (0x04)" in dsl


def test_s5_through_pm1a_control_powers_off() -> None:
    offs: list[int] = []
    pm = AcpiPm(5, lambda: offs.append(1))
    assert int.from_bytes(pm.read(4, 2), "little") & SCI_EN
    pm.write(4, ((3 << 10) | SLP_EN).to_bytes(2, "little"))  # S3: not supported, ignored
    assert offs == []
    pm.write(4, (5 << 10).to_bytes(2, "little"))  # SLP_TYP alone does nothing
    assert offs == []
    pm.write(4, ((5 << 10) | SLP_EN).to_bytes(2, "little"))
    assert offs == [1]
    assert not int.from_bytes(pm.read(4, 2), "little") & SLP_EN


def test_power_button_raises_the_sci_until_the_guest_clears_it() -> None:
    sci = RecordingTrigger()
    pm = AcpiPm(5, lambda: None, sci)
    pm.press_power_button()
    assert not sci.level  # PWRBTN_EN is still clear: status only
    assert int.from_bytes(pm.read(0, 2), "little") & PWRBTN_STS
    pm.write(2, PWRBTN_STS.to_bytes(2, "little"))  # the guest enables the event
    assert sci.level
    pm.write(0, PWRBTN_STS.to_bytes(2, "little"))  # and acknowledges it
    assert not sci.level and sci.levels == [True, False]


def test_the_fadt_declares_a_fixed_power_button() -> None:
    fadt = next(d for d in TABLES.values() if d[:4] == b"FACP")
    assert not struct.unpack_from("<I", fadt, 112)[0] & (1 << 4)  # PWR_BUTTON clear: fixed hardware button
    assert struct.unpack_from("<H", fadt, 46)[0] == acpi.SCI_IRQ


def test_pm1_status_is_write_one_to_clear_and_garbage_is_harmless() -> None:
    pm = AcpiPm(5, lambda: None)
    pm.regs[0] = 0xFF
    pm.write(0, b"\x0f")
    assert pm.read(0, 1) == b"\xf0"
    pm.write(5, b"\x01\x02\x03\x04")  # runs off the end of the block
    assert len(pm.read(5, 4)) == 4
