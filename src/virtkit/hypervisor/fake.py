"""A scripted hypervisor for unit tests: vCPUs replay a list of exits and record what they were given."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from virtkit.hypervisor.base import (
    CpuidEntry,
    Exit,
    Interrupted,
    Registers,
    SpecialRegisters,
    SystemEvent,
)


class FakeVcpu:
    def __init__(self, index: int, script: Iterable[Exit] = (), end: Exit = SystemEvent("shutdown")) -> None:
        self._index = index
        self.script: deque[Exit] = deque(script)
        self.end = end
        self.answers: list[bytes] = []
        self.registers = Registers()
        self.special_registers = SpecialRegisters()
        self.cpuid: list[CpuidEntry] = []
        self.msrs: dict[int, int] = {}
        self.fpu_reset = False
        self.closed = False
        self._kicked = threading.Event()

    @property
    def index(self) -> int:
        return self._index

    def run(self) -> Exit:
        if self._kicked.is_set():
            return Interrupted()
        if self.script:
            return self.script.popleft()
        return self.end

    def complete_in(self, data: bytes) -> None:
        self.answers.append(bytes(data))

    def kick(self) -> None:
        self._kicked.set()

    def clear_kick(self) -> None:
        self._kicked.clear()

    def get_registers(self) -> Registers:
        return self.registers

    def set_registers(self, regs: Registers) -> None:
        self.registers = regs

    def get_special_registers(self) -> SpecialRegisters:
        return self.special_registers

    def set_special_registers(self, sregs: SpecialRegisters) -> None:
        self.special_registers = sregs

    def set_cpuid(self, entries: Sequence[CpuidEntry]) -> None:
        self.cpuid = list(entries)

    def set_msrs(self, msrs: dict[int, int]) -> None:
        self.msrs.update(msrs)

    def reset_fpu(self) -> None:
        self.fpu_reset = True

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeVm:
    scripts: dict[int, list[Exit]] = field(default_factory=dict)
    memory: list[tuple[int, int, int, int]] = field(default_factory=list)
    irq_events: list[tuple[int, bool]] = field(default_factory=list)
    irqchip: bool = False
    pit: bool = False
    vcpus: list[FakeVcpu] = field(default_factory=list)
    closed: bool = False

    def map_memory(self, slot: int, guest_address: int, size: int, host_address: int) -> None:
        self.memory.append((slot, guest_address, size, host_address))

    def create_irqchip(self) -> None:
        self.irqchip = True

    def create_pit(self) -> None:
        self.pit = True

    def set_irq_line(self, irq: int, level: bool) -> None:
        self.irq_events.append((irq, level))

    def create_vcpu(self, index: int) -> FakeVcpu:
        vcpu = FakeVcpu(index, self.scripts.get(index, ()))
        self.vcpus.append(vcpu)
        return vcpu

    def close(self) -> None:
        self.closed = True


DEFAULT_CPUID = (
    CpuidEntry(0x0, eax=0xD, ebx=0x68747541, ecx=0x444D4163, edx=0x69746E65),
    CpuidEntry(0x1, eax=0x00A00F11, ebx=0x00000800, ecx=0xF6D83203, edx=0x178BFBFF),
    CpuidEntry(0xB, index=0, flags=1, eax=1, ebx=1, ecx=0x100, edx=0),
    CpuidEntry(0x40000000, eax=0x40000001, ebx=0x4B4D564B, ecx=0x564B4D56, edx=0x4D),
    CpuidEntry(0x40000001, eax=0x01007AFB),
    CpuidEntry(0x80000000, eax=0x80000008),
)


class FakeHypervisor:
    name = "fake"

    def __init__(
        self,
        scripts: dict[int, list[Exit]] | None = None,
        cpuid: Sequence[CpuidEntry] = DEFAULT_CPUID,
        later_boots: Sequence[dict[int, list[Exit]]] = (),
    ) -> None:
        """``scripts`` drive the first VM's vCPUs (by index); ``later_boots`` the VMs created after it."""
        self.scripts = scripts or {}
        self.later_boots = list(later_boots)
        self.cpuid = list(cpuid)
        self.vms: list[FakeVm] = []

    def create_vm(self) -> FakeVm:
        scripts = self.scripts if not self.vms else (self.later_boots.pop(0) if self.later_boots else {})
        vm = FakeVm(scripts=scripts)
        self.vms.append(vm)
        return vm

    def supported_cpuid(self) -> list[CpuidEntry]:
        return list(self.cpuid)
