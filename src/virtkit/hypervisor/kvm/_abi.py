"""The KVM userspace ABI for x86_64: ioctl numbers and ctypes structs (linux/kvm.h, asm/kvm.h).

Private to ``virtkit.hypervisor.kvm``; every struct carries the C declaration it mirrors.
"""

from __future__ import annotations

import ctypes

_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2
KVMIO = 0xAE


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (KVMIO << 8) | nr


def _io(nr: int) -> int:
    return _ioc(_IOC_NONE, nr, 0)


def _iow(nr: int, size: int) -> int:
    return _ioc(_IOC_WRITE, nr, size)


def _ior(nr: int, size: int) -> int:
    return _ioc(_IOC_READ, nr, size)


def _iowr(nr: int, size: int) -> int:
    return _ioc(_IOC_READ | _IOC_WRITE, nr, size)


class UserspaceMemoryRegion(ctypes.Structure):
    """struct kvm_userspace_memory_region { __u32 slot, flags; __u64 guest_phys_addr, memory_size,
    userspace_addr; }"""

    _fields_ = [
        ("slot", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("guest_phys_addr", ctypes.c_uint64),
        ("memory_size", ctypes.c_uint64),
        ("userspace_addr", ctypes.c_uint64),
    ]


class Regs(ctypes.Structure):
    """struct kvm_regs { __u64 rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8..r15, rip, rflags; }"""

    _fields_ = [
        (n, ctypes.c_uint64)
        for n in (
            *("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp"),
            *("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"),
            *("rip", "rflags"),
        )
    ]


class Segment(ctypes.Structure):
    """struct kvm_segment { __u64 base; __u32 limit; __u16 selector; __u8 type, present, dpl, db, s, l, g,
    avl, unusable, padding; }"""

    _fields_ = [
        ("base", ctypes.c_uint64),
        ("limit", ctypes.c_uint32),
        ("selector", ctypes.c_uint16),
        ("type", ctypes.c_uint8),
        ("present", ctypes.c_uint8),
        ("dpl", ctypes.c_uint8),
        ("db", ctypes.c_uint8),
        ("s", ctypes.c_uint8),
        ("l", ctypes.c_uint8),
        ("g", ctypes.c_uint8),
        ("avl", ctypes.c_uint8),
        ("unusable", ctypes.c_uint8),
        ("padding", ctypes.c_uint8),
    ]


class Dtable(ctypes.Structure):
    """struct kvm_dtable { __u64 base; __u16 limit; __u16 padding[3]; }"""

    _fields_ = [("base", ctypes.c_uint64), ("limit", ctypes.c_uint16), ("padding", ctypes.c_uint16 * 3)]


class Sregs(ctypes.Structure):
    """struct kvm_sregs { struct kvm_segment cs, ds, es, fs, gs, ss, tr, ldt; struct kvm_dtable gdt, idt;
    __u64 cr0, cr2, cr3, cr4, cr8, efer, apic_base; __u64 interrupt_bitmap[4]; }"""

    _fields_ = [
        *((n, Segment) for n in ["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"]),
        ("gdt", Dtable),
        ("idt", Dtable),
        *((n, ctypes.c_uint64) for n in ["cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apic_base"]),
        ("interrupt_bitmap", ctypes.c_uint64 * 4),
    ]


class CpuidEntry2(ctypes.Structure):
    """struct kvm_cpuid_entry2 { __u32 function, index, flags, eax, ebx, ecx, edx, padding[3]; }"""

    _fields_ = [
        *((n, ctypes.c_uint32) for n in ["function", "index", "flags", "eax", "ebx", "ecx", "edx"]),
        ("padding", ctypes.c_uint32 * 3),
    ]


MAX_CPUID_ENTRIES = 256


class Cpuid2(ctypes.Structure):
    """struct kvm_cpuid2 { __u32 nent, padding; struct kvm_cpuid_entry2 entries[]; } (fixed capacity)"""

    _fields_ = [
        ("nent", ctypes.c_uint32),
        ("padding", ctypes.c_uint32),
        ("entries", CpuidEntry2 * MAX_CPUID_ENTRIES),
    ]


class MsrEntry(ctypes.Structure):
    """struct kvm_msr_entry { __u32 index, reserved; __u64 data; }"""

    _fields_ = [("index", ctypes.c_uint32), ("reserved", ctypes.c_uint32), ("data", ctypes.c_uint64)]


MAX_MSRS = 32


class Msrs(ctypes.Structure):
    """struct kvm_msrs { __u32 nmsrs, pad; struct kvm_msr_entry entries[]; } (fixed capacity)"""

    _fields_ = [("nmsrs", ctypes.c_uint32), ("pad", ctypes.c_uint32), ("entries", MsrEntry * MAX_MSRS)]


class Fpu(ctypes.Structure):
    """struct kvm_fpu { __u8 fpr[8][16]; __u16 fcw, fsw; __u8 ftwx, pad1; __u16 last_opcode; __u64 last_ip,
    last_dp; __u8 xmm[16][16]; __u32 mxcsr, pad2; }"""

    _fields_ = [
        ("fpr", ctypes.c_uint8 * 128),
        ("fcw", ctypes.c_uint16),
        ("fsw", ctypes.c_uint16),
        ("ftwx", ctypes.c_uint8),
        ("pad1", ctypes.c_uint8),
        ("last_opcode", ctypes.c_uint16),
        ("last_ip", ctypes.c_uint64),
        ("last_dp", ctypes.c_uint64),
        ("xmm", ctypes.c_uint8 * 256),
        ("mxcsr", ctypes.c_uint32),
        ("pad2", ctypes.c_uint32),
    ]


class IrqLevel(ctypes.Structure):
    """struct kvm_irq_level { __u32 irq; __u32 level; }"""

    _fields_ = [("irq", ctypes.c_uint32), ("level", ctypes.c_uint32)]


class PitConfig(ctypes.Structure):
    """struct kvm_pit_config { __u32 flags; __u32 pad[15]; }"""

    _fields_ = [("flags", ctypes.c_uint32), ("pad", ctypes.c_uint32 * 15)]


# system ioctls
KVM_GET_API_VERSION = _io(0x00)
KVM_CREATE_VM = _io(0x01)
KVM_CHECK_EXTENSION = _io(0x03)
KVM_GET_VCPU_MMAP_SIZE = _io(0x04)
KVM_GET_SUPPORTED_CPUID = _iowr(0x05, 8)
# vm ioctls
KVM_CREATE_VCPU = _io(0x41)
KVM_SET_USER_MEMORY_REGION = _iow(0x46, ctypes.sizeof(UserspaceMemoryRegion))
KVM_SET_TSS_ADDR = _io(0x47)
KVM_SET_IDENTITY_MAP_ADDR = _iow(0x48, 8)
KVM_CREATE_IRQCHIP = _io(0x60)
KVM_IRQ_LINE = _iow(0x61, ctypes.sizeof(IrqLevel))
KVM_CREATE_PIT2 = _iow(0x77, ctypes.sizeof(PitConfig))
# vcpu ioctls
KVM_RUN = _io(0x80)
KVM_GET_REGS = _ior(0x81, ctypes.sizeof(Regs))
KVM_SET_REGS = _iow(0x82, ctypes.sizeof(Regs))
KVM_GET_SREGS = _ior(0x83, ctypes.sizeof(Sregs))
KVM_SET_SREGS = _iow(0x84, ctypes.sizeof(Sregs))
KVM_SET_MSRS = _iow(0x89, 8)
KVM_GET_FPU = _ior(0x8C, ctypes.sizeof(Fpu))
KVM_SET_FPU = _iow(0x8D, ctypes.sizeof(Fpu))
KVM_SET_CPUID2 = _iow(0x90, 8)

# capabilities (KVM_CHECK_EXTENSION)
KVM_CAP_IRQCHIP = 0
KVM_CAP_USER_MEMORY = 3
KVM_CAP_SET_TSS_ADDR = 4
KVM_CAP_EXT_CPUID = 7
KVM_CAP_PIT2 = 33
KVM_CAP_IMMEDIATE_EXIT = 136

KVM_PIT_SPEAKER_DUMMY = 1

# struct kvm_run: offsets of the fields we read (the header is fixed; the exit union starts at 32)
RUN_IMMEDIATE_EXIT = 1
RUN_EXIT_REASON = 8
RUN_EXIT_UNION = 32

KVM_EXIT_UNKNOWN = 0
KVM_EXIT_EXCEPTION = 1
KVM_EXIT_IO = 2
KVM_EXIT_HYPERCALL = 3
KVM_EXIT_DEBUG = 4
KVM_EXIT_HLT = 5
KVM_EXIT_MMIO = 6
KVM_EXIT_IRQ_WINDOW_OPEN = 7
KVM_EXIT_SHUTDOWN = 8
KVM_EXIT_FAIL_ENTRY = 9
KVM_EXIT_INTR = 10
KVM_EXIT_INTERNAL_ERROR = 17
KVM_EXIT_SYSTEM_EVENT = 24

KVM_EXIT_IO_IN = 0
KVM_EXIT_IO_OUT = 1

KVM_SYSTEM_EVENT_SHUTDOWN = 1
KVM_SYSTEM_EVENT_RESET = 2
KVM_SYSTEM_EVENT_CRASH = 3
