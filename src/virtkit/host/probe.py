"""Probe the host like virt-host-validate: which virtualization techniques work here, and why.

Facts are read from /proc, /sys and /dev (paths are parameters so unit tests can point at a fake tree).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

KVM_GET_API_VERSION = 0xAE00


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class HostReport:
    cpu_model: str
    cpu_flags: frozenset[str]
    kvm_device: bool
    kvm_api: int | None
    kvm_modules: frozenset[str]
    qemu_binary: str | None
    qemu_version: str | None
    mem_available_mib: int
    checks: tuple[Check, ...] = field(default=())

    @property
    def hw_virt_flag(self) -> str | None:
        return "vmx" if "vmx" in self.cpu_flags else "svm" if "svm" in self.cpu_flags else None

    @property
    def kvm_pvm(self) -> bool:
        return "kvm_pvm" in self.kvm_modules

    @property
    def kvm_hardware(self) -> bool:
        """/dev/kvm can run unmodified guests: VT-x/AMD-V in the CPU and kvm_intel/kvm_amd serving it."""
        vendor_module = {"vmx": "kvm_intel", "svm": "kvm_amd"}.get(self.hw_virt_flag or "")
        return bool(self.kvm_api == 12 and vendor_module and vendor_module in self.kvm_modules)

    @property
    def tcg(self) -> bool:
        return self.qemu_binary is not None

    def hardware_reason(self) -> str:
        if not self.kvm_device:
            return "/dev/kvm is missing (load kvm_intel or kvm_amd, or enable virtualization in firmware)"
        if self.kvm_api is None:
            return "/dev/kvm exists but cannot be opened (run as root or join the kvm group)"
        if self.kvm_hardware:
            return f"CPU has {self.hw_virt_flag} and {sorted(self.kvm_modules)} serve /dev/kvm"
        if self.kvm_pvm:
            return (
                "/dev/kvm is KVM-PVM (pagetable-based, no VT-x/AMD-V): it runs only PVM-enabled guest "
                "kernels natively; unmodified kernels fail with an emulation error"
            )
        if not self.hw_virt_flag:
            return "the CPU has no vmx/svm flag (no VT-x/AMD-V exposed to this host)"
        return "neither kvm_intel nor kvm_amd is loaded"


def _cpuinfo(path: Path) -> tuple[str, frozenset[str]]:
    model, flags = "unknown", frozenset[str]()
    try:
        text = path.read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown":
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return model, flags


def _kvm_api(dev: Path) -> int | None:
    try:
        fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return fcntl.ioctl(fd, KVM_GET_API_VERSION, 0)
    except OSError:
        return None
    finally:
        os.close(fd)


def _mem_available_mib(meminfo: Path) -> int:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


@cache
def _qemu_version(binary: str) -> str | None:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = out.splitlines()[0] if out else ""
    return first.removeprefix("QEMU emulator version ").strip() or None


def probe(
    proc: Path = Path("/proc"),
    sys_module: Path = Path("/sys/module"),
    dev_kvm: Path = Path("/dev/kvm"),
    qemu: str | None = None,
) -> HostReport:
    model, flags = _cpuinfo(proc / "cpuinfo")
    modules = frozenset(m for m in ("kvm", "kvm_intel", "kvm_amd", "kvm_pvm") if (sys_module / m).exists())
    qemu_binary = shutil.which(qemu or os.environ.get("VIRTKIT_QEMU", "qemu-system-x86_64"))
    report = HostReport(
        cpu_model=model,
        cpu_flags=flags,
        kvm_device=dev_kvm.exists(),
        kvm_api=_kvm_api(dev_kvm) if dev_kvm.exists() else None,
        kvm_modules=modules,
        qemu_binary=qemu_binary,
        qemu_version=_qemu_version(qemu_binary) if qemu_binary else None,
        mem_available_mib=_mem_available_mib(proc / "meminfo"),
    )
    checks = (
        Check("hardware-assisted virtualization (KVM)", report.kvm_hardware, report.hardware_reason()),
        Check(
            "PVM guest kernels on KVM-PVM",
            report.kvm_pvm and report.kvm_api == 12,
            "kvm_pvm serves /dev/kvm: the native engine can run PVM-enabled guest kernels"
            if report.kvm_pvm
            else "kvm_pvm is not loaded",
        ),
        Check(
            "binary translation (QEMU TCG)",
            report.tcg,
            f"{qemu_binary} ({report.qemu_version})"
            if qemu_binary
            else "qemu-system-x86_64 not found (apt-get install qemu-system-x86)",
        ),
        Check(
            "paravirtualized devices (virtio)",
            True,
            "virtio-blk, virtio-net, virtio-serial (agent) and virtio-rng on both engines",
        ),
    )
    return HostReport(**{**report.__dict__, "checks": checks})
