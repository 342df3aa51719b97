from __future__ import annotations

from pathlib import Path

import pytest

from virtkit.host.probe import probe


def fake_host(tmp_path: Path, flags: str, modules: tuple[str, ...]) -> tuple[Path, Path]:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cpuinfo").write_text(f"model name\t: Test CPU\nflags\t\t: fpu sse2 {flags}\n")
    (proc / "meminfo").write_text("MemTotal: 8000000 kB\nMemAvailable:    4096000 kB\n")
    mods = tmp_path / "module"
    mods.mkdir()
    for m in modules:
        (mods / m).mkdir()
    return proc, mods


@pytest.mark.parametrize(
    ("flags", "modules", "hardware", "pvm"),
    [
        ("svm", ("kvm", "kvm_amd"), True, False),
        ("vmx", ("kvm", "kvm_intel"), True, False),
        ("", ("kvm", "kvm_pvm"), False, True),
        ("vmx", ("kvm",), False, False),
    ],
)
def test_techniques(tmp_path: Path, flags: str, modules: tuple[str, ...], hardware: bool, pvm: bool) -> None:
    proc, mods = fake_host(tmp_path, flags, modules)
    # The fake tree has no /dev/kvm; after probing, pretend one answered KVM_GET_API_VERSION with 12.
    report = probe(proc=proc, sys_module=mods, dev_kvm=tmp_path / "nokvm")
    assert report.cpu_model == "Test CPU"
    assert report.mem_available_mib == 4000
    assert report.kvm_pvm is pvm
    report = report.__class__(**{**report.__dict__, "kvm_device": True, "kvm_api": 12})
    assert report.kvm_hardware is hardware
    if pvm:
        assert "KVM-PVM" in report.hardware_reason()


def test_missing_kvm_says_how_to_fix(tmp_path: Path) -> None:
    proc, mods = fake_host(tmp_path, "", ())
    report = probe(proc=proc, sys_module=mods, dev_kvm=tmp_path / "nokvm", qemu="definitely-not-qemu")
    assert not report.kvm_hardware
    assert "/dev/kvm is missing" in report.hardware_reason()
    tcg = next(c for c in report.checks if "TCG" in c.name)
    assert not tcg.ok and "apt-get install qemu-system-x86" in tcg.detail
