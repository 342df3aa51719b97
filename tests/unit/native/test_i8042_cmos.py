from __future__ import annotations

from virtkit.devices.cmos import Cmos
from virtkit.devices.i8042 import COMMAND, DATA, I8042


def test_command_0xfe_resets_the_cpu() -> None:
    resets: list[int] = []
    kbd = I8042(lambda: resets.append(1))
    kbd.write(COMMAND, b"\xaa")
    assert resets == []
    kbd.write(COMMAND, b"\xfe")
    assert resets == [1]


def test_controller_configuration_byte_round_trips() -> None:
    kbd = I8042(lambda: None)
    kbd.write(COMMAND, b"\x60")
    kbd.write(DATA, b"\x45")
    kbd.write(COMMAND, b"\x20")
    assert kbd.read(COMMAND, 1)[0] & 1  # output buffer full
    assert kbd.read(DATA, 1) == b"\x45"
    assert kbd.read(COMMAND, 1) == b"\x00"


def test_cmos_reads_zero_so_rtc_updates_never_look_in_progress() -> None:
    cmos = Cmos()
    cmos.write(0, b"\x8a")
    assert cmos.index == 0x0A
    assert cmos.read(1, 1) == b"\x00"
