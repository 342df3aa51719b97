"""The hypervisor seam: ``Hypervisor -> Vm -> Vcpu`` with one ``run() -> Exit`` contract.

Exits are small frozen dataclasses handled with ``match``; register state is plain data so the arch layer
can compute it without a hypervisor and the fake can record it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from virtkit.errors import VirtkitError


class HypervisorError(VirtkitError):
    """An ioctl on /dev/kvm (or the fake) failed."""


# --- exits --------------------------------------------------------------------------------------------
# NamedTuples rather than dataclasses: built once per exit on the hot path, and five times cheaper to define at
# start-up (which counts under nested virtualization). Match them by type (``case IoOut(...)``), never with ==:
# two exits of different types with equal fields compare equal as tuples.


class IoOut(NamedTuple):
    """The guest wrote ``data`` (several items of ``size`` bytes for ``rep outs``) to ``port``."""

    port: int
    size: int
    data: bytes


class IoIn(NamedTuple):
    """The guest reads ``items`` items of ``size`` bytes (``rep ins``) from ``port``; answer with
    ``Vcpu.complete_in``."""

    port: int
    size: int
    items: int = 1


class MmioWrite(NamedTuple):
    address: int
    data: bytes


class MmioRead(NamedTuple):
    """Answer with ``Vcpu.complete_in`` before the next ``run``."""

    address: int
    size: int


class Halt(NamedTuple):
    """Only without an in-kernel irqchip."""


class Shutdown(NamedTuple):
    """A triple fault: the CPU reset itself (``reboot=t`` in Linux ends up here)."""


class SystemEvent(NamedTuple):
    kind: str  # "shutdown", "reset" or "crash"


class Interrupted(NamedTuple):
    """``run`` returned because the vCPU was kicked (immediate_exit or a signal)."""


class Failed(NamedTuple):
    """Anything that means the guest cannot continue: internal error, failed entry, unknown exit."""

    reason: str


Exit = IoOut | IoIn | MmioWrite | MmioRead | Halt | Shutdown | SystemEvent | Interrupted | Failed


# --- register state -------------------------------------------------------------------------------------


@dataclass
class Registers:
    rax: int = 0
    rbx: int = 0
    rcx: int = 0
    rdx: int = 0
    rsi: int = 0
    rdi: int = 0
    rsp: int = 0
    rbp: int = 0
    r8: int = 0
    r9: int = 0
    r10: int = 0
    r11: int = 0
    r12: int = 0
    r13: int = 0
    r14: int = 0
    r15: int = 0
    rip: int = 0
    rflags: int = 0x2


@dataclass
class Segment:
    base: int = 0
    limit: int = 0xFFFF
    selector: int = 0
    type: int = 0
    present: int = 1
    dpl: int = 0
    db: int = 0
    s: int = 1
    l: int = 0  # noqa: E741 - the KVM field name
    g: int = 0
    avl: int = 0
    unusable: int = 0


@dataclass
class DescriptorTable:
    base: int = 0
    limit: int = 0xFFFF


@dataclass
class SpecialRegisters:
    cs: Segment = field(default_factory=Segment)
    ds: Segment = field(default_factory=Segment)
    es: Segment = field(default_factory=Segment)
    fs: Segment = field(default_factory=Segment)
    gs: Segment = field(default_factory=Segment)
    ss: Segment = field(default_factory=Segment)
    tr: Segment = field(default_factory=lambda: Segment(type=11, s=0))
    ldt: Segment = field(default_factory=lambda: Segment(type=2, s=0))
    gdt: DescriptorTable = field(default_factory=DescriptorTable)
    idt: DescriptorTable = field(default_factory=DescriptorTable)
    cr0: int = 0x60000010
    cr2: int = 0
    cr3: int = 0
    cr4: int = 0
    cr8: int = 0
    efer: int = 0
    apic_base: int = 0xFEE00900


@dataclass(frozen=True)
class CpuidEntry:
    function: int
    index: int = 0
    flags: int = 0
    eax: int = 0
    ebx: int = 0
    ecx: int = 0
    edx: int = 0


# --- the seam -------------------------------------------------------------------------------------------


class Vcpu(Protocol):
    @property
    def index(self) -> int: ...

    def run(self) -> Exit:
        """Enter the guest until the next exit. Releases the GIL; ``kick`` makes it return ``Interrupted``."""

    def complete_in(self, data: bytes) -> None:
        """Give the guest the bytes of the last ``IoIn`` or ``MmioRead``."""

    def kick(self) -> None:
        """Make a running (or the next) ``run`` return ``Interrupted``. Safe from any thread."""

    def clear_kick(self) -> None: ...

    def get_registers(self) -> Registers: ...

    def set_registers(self, regs: Registers) -> None: ...

    def get_special_registers(self) -> SpecialRegisters: ...

    def set_special_registers(self, sregs: SpecialRegisters) -> None: ...

    def set_cpuid(self, entries: Sequence[CpuidEntry]) -> None: ...

    def set_msrs(self, msrs: dict[int, int]) -> None: ...

    def reset_fpu(self) -> None:
        """Load the architectural FPU reset state (FCW 0x37f, MXCSR 0x1f80)."""

    def close(self) -> None: ...


class Vm(Protocol):
    def map_memory(self, slot: int, guest_address: int, size: int, host_address: int) -> None: ...

    def create_irqchip(self) -> None:
        """In-kernel PIC, IOAPIC and local APICs."""

    def create_pit(self) -> None: ...

    def set_irq_line(self, irq: int, level: bool) -> None: ...

    def create_vcpu(self, index: int) -> Vcpu: ...

    def close(self) -> None: ...


class Hypervisor(Protocol):
    name: str

    def create_vm(self) -> Vm: ...

    def supported_cpuid(self) -> list[CpuidEntry]: ...
