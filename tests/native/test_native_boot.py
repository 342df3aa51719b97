"""The native VMM boots the test kernels on /dev/kvm and they report what they were given."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from native_harness import Boot

from virtkit.arch.x86_64 import layout
from virtkit.arch.x86_64.e820 import e820_map
from virtkit.machine.config import Outcome

MIB = 1 << 20


def checksum(data: bytes) -> int:
    s = 0
    for b in data:
        s = (s * 31 + b) & 0xFFFFFFFF
    return s


def expected_e820(memory_mib: int = 64) -> list[str]:
    return [f"e820: {e.address:#018x} {e.size:#018x} {e.type}" for e in e820_map(layout.ram_layout(memory_mib * MIB))]


@pytest.fixture
def initrd(tmp_path: Path) -> Path:
    path = tmp_path / "initrd.img"
    path.write_bytes(bytes((i * 7) & 0xFF for i in range(6000)))
    return path


@pytest.mark.parametrize(("kernel", "entry"), [("bzimage", "linux64"), ("bzimage32", "linux32"), ("pvh", "pvh")])
def test_kernel_reports_cmdline_e820_and_initrd(
    boot: Callable[..., Boot], test_kernels: dict[str, Path], initrd: Path, kernel: str, entry: str
) -> None:
    cmdline = "console=ttyS0 virtkit.test=1 reset"
    b = boot(test_kernels[kernel], cmdline, initrd, on_reset="exit")
    outcome = b.wait()
    text = b.text()
    assert outcome == Outcome("reset", "i8042 reset"), text
    assert f"virtkit-test: entry={entry}\n" in text
    assert f"cmdline: {cmdline}\n" in text
    assert re.findall(r"e820: 0x.*", text) == expected_e820()
    data = initrd.read_bytes()
    address = (64 * MIB - len(data)) & ~0xFFF
    assert f"initrd: addr={address:#010x} size={len(data)} sum={checksum(data):#010x}\n" in text
    if entry == "pvh":
        assert "pvh: magic=0x336ec578 version=1 modules=1\n" in text
    else:
        assert "boot_params: loader=0xff\n" in text
    assert "then: reset" in text
    stats = b.runner.last_statistics
    assert stats is not None and stats.entry == entry and stats.unclaimed == 0


def test_paravirt_leaves_reach_the_guest_and_can_be_hidden(
    boot: Callable[..., Boot], test_kernels: dict[str, Path]
) -> None:
    on = boot(test_kernels["bzimage"], "reset", on_reset="exit")
    on.wait()
    assert "cpuid: 0x40000000=KVMKVMKVM" in on.text()
    off = boot(test_kernels["bzimage"], "reset", on_reset="exit", paravirt=False)
    off.wait()
    assert "cpuid: 0x40000000=............ features=0x00000000" in off.text()


def test_uart_input_is_echoed_through_the_receive_interrupt(
    boot: Callable[..., Boot], test_kernels: dict[str, Path]
) -> None:
    b = boot(test_kernels["bzimage"], "echo reset", on_reset="exit")
    b.wait_for("echo: ready")
    assert "thre: irq ok" in b.text()  # the transmit-empty interrupt arrived first
    for ch in "virt":
        assert b.runner.send_input(ch.encode()) == 1
        b.wait_for(f"echo: {ch}\n")
    b.runner.send_input(b"q")
    assert b.wait().kind == "reset"
    assert "echo: irqs=5" in b.text()  # one receive interrupt per key: no polling


def test_pause_kicks_a_halted_vcpu_and_resume_continues(
    boot: Callable[..., Boot], test_kernels: dict[str, Path]
) -> None:
    b = boot(test_kernels["pvh"], "echo reset", on_reset="exit")
    b.wait_for("echo: ready")  # the guest now sleeps in HLT inside KVM_RUN
    started = time.monotonic()
    b.runner.pause()
    assert time.monotonic() - started < 1.0
    assert b.runner.state == "paused"
    b.runner.send_input(b"p")
    time.sleep(0.3)
    assert "echo: p" not in b.text()  # paused: the interrupt is pending, nothing runs
    b.runner.resume()
    b.wait_for("echo: p\n")
    b.runner.send_input(b"q")
    assert b.wait().kind == "reset"


def test_guest_reset_restarts_the_machine(boot: Callable[..., Boot], test_kernels: dict[str, Path]) -> None:
    b = boot(test_kernels["bzimage"], "reset", on_reset="restart")
    deadline = time.monotonic() + 20
    while b.text().count("virtkit-test: entry=linux64") < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert b.text().count("virtkit-test: entry=linux64") >= 3, b.text()
    b.runner.stop()
    assert b.wait().kind == "stopped"
    assert b.runner.boots >= 3


def test_garbage_on_every_port_and_mmio_never_crashes_the_vmm(
    boot: Callable[..., Boot], test_kernels: dict[str, Path]
) -> None:
    b = boot(test_kernels["bzimage"], "garbage echo reset", on_reset="exit")
    b.wait_for("garbage: done", timeout=120)
    b.wait_for("echo: ready")  # the UART and the interrupt path still work afterwards
    b.runner.send_input(b"q")
    assert b.wait().kind == "reset"
    stats = b.runner.last_statistics
    assert stats is not None and stats.device_errors == 0
    assert stats.unclaimed > 60000 and len(stats.unclaimed_sample) <= 16
    assert stats.exits["mmio_write"] >= 15


@pytest.mark.parametrize("kernel", ["bzimage", "pvh"])
@pytest.mark.parametrize("how", ["hinted", "scan"])
def test_guest_powers_off_through_acpi(
    boot: Callable[..., Boot], test_kernels: dict[str, Path], kernel: str, how: str
) -> None:
    # "hinted": the RSDP from boot_params.acpi_rsdp_addr / start_info.rsdp_paddr; "scan": the BIOS-area search
    b = boot(test_kernels[kernel], "poweroff" + (" scan" if how == "scan" else ""))
    assert b.wait() == Outcome("poweroff", "ACPI S5")
    assert "acpi: rsdp=0xf0000 pm1a_cnt=0x0604 s5=5 checksums=ok" in b.text()


def test_without_acpi_the_guest_finds_no_tables(boot: Callable[..., Boot], test_kernels: dict[str, Path]) -> None:
    b = boot(test_kernels["bzimage"], "poweroff reset", acpi=False, on_reset="exit")
    assert b.wait().kind == "reset"
    assert "acpi: no rsdp" in b.text()


def test_power_button_reaches_the_guest_through_the_sci(
    boot: Callable[..., Boot], test_kernels: dict[str, Path]
) -> None:
    b = boot(test_kernels["bzimage"], "echo powerbutton")
    b.wait_for("echo: ready")
    assert b.runner.power_button()
    assert b.wait() == Outcome("poweroff", "ACPI S5")
    assert "acpi: power button\nthen: poweroff" in b.text()
