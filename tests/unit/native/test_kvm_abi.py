"""The ioctl numbers and struct sizes against the values in linux/kvm.h (x86_64)."""

from __future__ import annotations

import ctypes

from virtkit.hypervisor.kvm import _abi


def test_ioctl_numbers_match_the_kernel_headers() -> None:
    assert _abi.KVM_GET_API_VERSION == 0xAE00
    assert _abi.KVM_CREATE_VM == 0xAE01
    assert _abi.KVM_GET_SUPPORTED_CPUID == 0xC008AE05
    assert _abi.KVM_CREATE_VCPU == 0xAE41
    assert _abi.KVM_SET_USER_MEMORY_REGION == 0x4020AE46
    assert _abi.KVM_SET_TSS_ADDR == 0xAE47
    assert _abi.KVM_CREATE_IRQCHIP == 0xAE60
    assert _abi.KVM_IRQ_LINE == 0x4008AE61
    assert _abi.KVM_CREATE_PIT2 == 0x4040AE77
    assert _abi.KVM_RUN == 0xAE80
    assert _abi.KVM_GET_REGS == 0x8090AE81
    assert _abi.KVM_SET_REGS == 0x4090AE82
    assert _abi.KVM_GET_SREGS == 0x8138AE83
    assert _abi.KVM_SET_SREGS == 0x4138AE84
    assert _abi.KVM_SET_MSRS == 0x4008AE89
    assert _abi.KVM_SET_FPU == 0x41A0AE8D
    assert _abi.KVM_SET_CPUID2 == 0x4008AE90


def test_struct_layouts() -> None:
    assert ctypes.sizeof(_abi.Regs) == 144
    assert ctypes.sizeof(_abi.Segment) == 24
    assert ctypes.sizeof(_abi.Sregs) == 312
    assert _abi.Sregs.cr0.offset == 8 * 24 + 2 * 16
    assert ctypes.sizeof(_abi.CpuidEntry2) == 40
    assert ctypes.sizeof(_abi.Fpu) == 416
    assert ctypes.sizeof(_abi.UserspaceMemoryRegion) == 32
    assert ctypes.sizeof(_abi.PitConfig) == 64
    assert ctypes.sizeof(_abi.MsrEntry) == 16
