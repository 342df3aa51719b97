from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from virtkit.devices import serial as s
from virtkit.devices.trigger import RecordingTrigger


def make() -> tuple[s.Serial, RecordingTrigger, bytearray]:
    trigger = RecordingTrigger()
    out = bytearray()
    return s.Serial(trigger, out.extend), trigger, out


def reg(uart: s.Serial, offset: int) -> int:
    return uart.read(offset, 1)[0]


def test_transmit_goes_to_the_writer_and_the_holding_register_stays_empty() -> None:
    uart, trigger, out = make()
    for ch in b"hi\n":
        uart.write(s.RBR_THR_DLL, bytes([ch]))
    assert out == b"hi\n"
    assert reg(uart, s.LSR) & (s.LSR_THRE | s.LSR_TEMT) == s.LSR_THRE | s.LSR_TEMT
    assert trigger.levels == []  # no interrupt without IER


def test_divisor_latch_hides_the_data_registers() -> None:
    uart, _, out = make()
    uart.write(s.LCR, b"\x83")
    uart.write(s.RBR_THR_DLL, b"\x01")
    uart.write(s.IER_DLM, b"\x00")
    assert (reg(uart, s.RBR_THR_DLL), reg(uart, s.IER_DLM)) == (1, 0)
    uart.write(s.LCR, b"\x03")
    assert out == b""  # the divisor write was not transmitted
    assert reg(uart, s.IER_DLM) == 0


def test_transmit_empty_interrupt_raised_on_enable_and_cleared_by_reading_iir() -> None:
    uart, trigger, _ = make()
    uart.write(s.IER_DLM, bytes([s.IER_THRI]))
    assert trigger.level
    assert reg(uart, s.IIR_FCR) & 0x0F == s.IIR_THRI
    assert not trigger.level
    assert reg(uart, s.IIR_FCR) & 0x0F == s.IIR_NO_INT
    uart.write(s.RBR_THR_DLL, b"x")  # the byte leaves at once: the holding register is empty again
    assert trigger.level


def test_received_bytes_raise_data_ready_until_drained() -> None:
    uart, trigger, _ = make()
    uart.write(s.IER_DLM, bytes([s.IER_RDI]))
    assert uart.enqueue(b"ab") == 2
    assert trigger.level
    assert reg(uart, s.IIR_FCR) & 0x0F == s.IIR_RDI
    assert reg(uart, s.LSR) & s.LSR_DR
    assert bytes([reg(uart, 0), reg(uart, 0)]) == b"ab"
    assert not reg(uart, s.LSR) & s.LSR_DR
    assert not trigger.level


def test_data_ready_outranks_transmit_empty() -> None:
    uart, _, _ = make()
    uart.write(s.IER_DLM, bytes([s.IER_RDI | s.IER_THRI]))
    uart.enqueue(b"z")
    assert reg(uart, s.IIR_FCR) & 0x0F == s.IIR_RDI
    reg(uart, 0)
    assert reg(uart, s.IIR_FCR) & 0x0F == s.IIR_THRI


def test_receive_fifo_takes_only_what_fits() -> None:
    uart, _, _ = make()
    assert uart.enqueue(bytes(100)) == s.RX_FIFO_SIZE
    assert uart.enqueue(b"x") == 0
    uart.write(s.IIR_FCR, bytes([s.FCR_ENABLE | s.FCR_CLEAR_RX]))
    assert uart.rx_room() == s.RX_FIFO_SIZE
    assert reg(uart, s.IIR_FCR) & s.IIR_FIFO_ENABLED == s.IIR_FIFO_ENABLED


def test_loopback_returns_transmitted_bytes_and_reflects_modem_lines() -> None:
    uart, _, out = make()
    uart.write(s.MCR, bytes([s.MCR_LOOP | 0x0B]))
    uart.write(s.RBR_THR_DLL, b"L")
    assert out == b""
    assert reg(uart, s.RBR_THR_DLL) == ord("L")
    assert reg(uart, s.MSR) & (s.MSR_CTS | s.MSR_DSR | s.MSR_DCD) == s.MSR_CTS | s.MSR_DSR | s.MSR_DCD


def test_scratch_register_keeps_its_value() -> None:
    uart, _, _ = make()
    uart.write(s.SCR, b"\x5a")
    assert reg(uart, s.SCR) == 0x5A


def test_multi_byte_accesses_answer_with_the_right_size() -> None:
    uart, _, _ = make()
    assert len(uart.read(s.LSR, 4)) == 4
    uart.write(s.SCR, b"")  # an empty write is ignored


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 7), st.integers(0, 255)), max_size=60))
def test_any_register_traffic_keeps_the_line_consistent_with_iir(ops: list[tuple[bool, int, int]]) -> None:
    uart, trigger, _ = make()
    for is_write, offset, value in ops:
        if is_write:
            uart.write(offset, bytes([value]))
        else:
            assert len(uart.read(offset, 1)) == 1
        if value % 7 == 0:
            uart.enqueue(bytes([value]))
        assert trigger.level == (uart.iir & 0x0F != s.IIR_NO_INT)
