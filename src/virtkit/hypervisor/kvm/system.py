"""The /dev/kvm system file descriptor: API version, capabilities, supported CPUID, creating VMs."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from virtkit.hypervisor.base import CpuidEntry, HypervisorError
from virtkit.hypervisor.kvm import _abi
from virtkit.hypervisor.kvm._ioctl import ioctl_buf, ioctl_int
from virtkit.hypervisor.kvm.vm import KvmVm

# The signal that kicks a vCPU thread out of KVM_RUN. A Python handler must be installed (from the main
# thread) so the signal interrupts the ioctl with EINTR instead of killing the process.
KICK_SIGNAL = signal.SIGUSR2


def _ignore(signum: int, frame: object) -> None:
    pass


def install_kick_handler() -> None:
    if signal.getsignal(KICK_SIGNAL) in (signal.SIG_DFL, None):
        if threading.current_thread() is not threading.main_thread():
            raise HypervisorError(
                "the vCPU kick signal handler must be installed from the main thread",
                hint="create the Kvm hypervisor (or call install_kick_handler) in the main thread first",
            )
        signal.signal(KICK_SIGNAL, _ignore)


class Kvm:
    name = "kvm"

    def __init__(self, device: Path = Path("/dev/kvm")) -> None:
        try:
            self._fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            raise HypervisorError(
                f"cannot open {device}: {e.strerror}",
                hint="load kvm_intel/kvm_amd (or kvm_pvm) and run as root or a member of the kvm group",
            ) from e
        api = ioctl_int(self._fd, _abi.KVM_GET_API_VERSION, 0, "KVM_GET_API_VERSION")
        if api != 12:
            os.close(self._fd)
            raise HypervisorError(f"{device} speaks KVM API {api}, not 12", hint="use a Linux kernel >= 2.6.22")
        for cap in ("IRQCHIP", "USER_MEMORY", "SET_TSS_ADDR", "PIT2", "EXT_CPUID", "IMMEDIATE_EXIT"):
            if not self.check_extension(getattr(_abi, f"KVM_CAP_{cap}")):
                os.close(self._fd)
                raise HypervisorError(f"{device} lacks KVM_CAP_{cap}", hint="use a newer host kernel")
        self.vcpu_mmap_size = ioctl_int(self._fd, _abi.KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE")
        install_kick_handler()

    def check_extension(self, cap: int) -> int:
        return ioctl_int(self._fd, _abi.KVM_CHECK_EXTENSION, cap, "KVM_CHECK_EXTENSION")

    def supported_cpuid(self) -> list[CpuidEntry]:
        buf = _abi.Cpuid2(nent=_abi.MAX_CPUID_ENTRIES)
        ioctl_buf(self._fd, _abi.KVM_GET_SUPPORTED_CPUID, buf, "KVM_GET_SUPPORTED_CPUID")
        return [CpuidEntry(e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx) for e in buf.entries[: buf.nent]]

    def create_vm(self) -> KvmVm:
        fd = ioctl_int(self._fd, _abi.KVM_CREATE_VM, 0, "KVM_CREATE_VM")
        return KvmVm(fd, self.vcpu_mmap_size, KICK_SIGNAL)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
