"""A KVM vCPU file descriptor and its mmap'd ``struct kvm_run``.

``run`` calls ``fcntl.ioctl(fd, KVM_RUN)``, which releases the GIL. ``kick`` sets ``immediate_exit`` and
sends the kick signal to the thread inside ``run``: KVM_RUN then returns EINTR at once, or refuses to enter.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import signal
import struct
import threading
from collections.abc import Sequence
from dataclasses import fields

from virtkit.hypervisor.base import (
    CpuidEntry,
    DescriptorTable,
    Exit,
    Failed,
    Halt,
    HypervisorError,
    Interrupted,
    IoIn,
    IoOut,
    MmioRead,
    MmioWrite,
    Registers,
    Segment,
    Shutdown,
    SpecialRegisters,
    SystemEvent,
)
from virtkit.hypervisor.kvm import _abi
from virtkit.hypervisor.kvm._ioctl import ioctl_buf

_IO = struct.Struct("<BBHIQ")  # direction, size, port, count, data_offset
_MMIO = struct.Struct("<Q8sIB")  # phys_addr, data[8], len, is_write
_U32 = struct.Struct("<I")
_U32X2 = struct.Struct("<II")
_U64 = struct.Struct("<Q")
_SEGMENTS = ("cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt")
_SEG_FIELDS = tuple(f.name for f in fields(Segment))
_REG_FIELDS = tuple(f.name for f in fields(Registers))
_SYSTEM_EVENTS = {
    _abi.KVM_SYSTEM_EVENT_SHUTDOWN: "shutdown",
    _abi.KVM_SYSTEM_EVENT_RESET: "reset",
    _abi.KVM_SYSTEM_EVENT_CRASH: "crash",
}


class KvmVcpu:
    def __init__(self, fd: int, index: int, mmap_size: int, kick_signal: signal.Signals) -> None:
        self._fd = fd
        self._index = index
        self._kick_signal = kick_signal
        self._run = mmap.mmap(fd, mmap_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._thread: int | None = None
        self._in_window: tuple[int, int] = (0, 0)  # where the answer to an IN/MMIO read goes

    @property
    def index(self) -> int:
        return self._index

    def run(self) -> Exit:
        if self._thread is None:
            self._thread = threading.get_ident()  # where kicks are sent: one thread runs a vCPU
        try:
            fcntl.ioctl(self._fd, _abi.KVM_RUN, 0)
        except OSError as e:
            if e.errno in (errno.EINTR, errno.EAGAIN):
                return Interrupted()
            raise HypervisorError(f"KVM_RUN failed on vCPU {self._index}: {e.strerror}") from e
        run = self._run
        reason = _U32.unpack_from(run, _abi.RUN_EXIT_REASON)[0]
        if reason == _abi.KVM_EXIT_IO:
            direction, size, port, count, offset = _IO.unpack_from(run, _abi.RUN_EXIT_UNION)
            if direction == _abi.KVM_EXIT_IO_OUT:
                return IoOut(port, size, run[offset : offset + size * count])
            self._in_window = (offset, size * count)
            return IoIn(port, size, count)
        if reason == _abi.KVM_EXIT_MMIO:
            address, data, length, is_write = _MMIO.unpack_from(run, _abi.RUN_EXIT_UNION)
            length = min(length, 8)
            if is_write:
                return MmioWrite(address, data[:length])
            self._in_window = (_abi.RUN_EXIT_UNION + 8, length)
            return MmioRead(address, length)
        if reason == _abi.KVM_EXIT_INTR:
            return Interrupted()
        if reason == _abi.KVM_EXIT_HLT:
            return Halt()
        if reason == _abi.KVM_EXIT_SHUTDOWN:
            return Shutdown()
        if reason == _abi.KVM_EXIT_SYSTEM_EVENT:
            kind = _U32.unpack_from(run, _abi.RUN_EXIT_UNION)[0]
            return SystemEvent(_SYSTEM_EVENTS.get(kind, f"event {kind}"))
        if reason == _abi.KVM_EXIT_INTERNAL_ERROR:
            sub, ndata = _U32X2.unpack_from(run, _abi.RUN_EXIT_UNION)
            data = [_U64.unpack_from(run, _abi.RUN_EXIT_UNION + 8 + 8 * i)[0] for i in range(min(ndata, 4))]
            return Failed(f"KVM internal error {sub} (data {[hex(d) for d in data]}) at {self._where()}")
        if reason == _abi.KVM_EXIT_FAIL_ENTRY:
            hw = _U64.unpack_from(run, _abi.RUN_EXIT_UNION)[0]
            return Failed(f"KVM failed to enter the guest (hardware reason {hw:#x})")
        return Failed(f"unhandled KVM exit reason {reason} at {self._where()}")

    def _where(self) -> str:
        try:
            return f"rip {self.get_registers().rip:#x}"
        except HypervisorError:
            return "rip unknown"

    def complete_in(self, data: bytes) -> None:
        offset, length = self._in_window
        self._run[offset : offset + length] = data[:length].ljust(length, b"\xff")

    def kick(self) -> None:
        self._run[_abi.RUN_IMMEDIATE_EXIT] = 1
        thread = self._thread
        if thread is not None:
            with contextlib.suppress(OSError):  # the thread already ended
                signal.pthread_kill(thread, self._kick_signal)

    def clear_kick(self) -> None:
        self._run[_abi.RUN_IMMEDIATE_EXIT] = 0

    def get_registers(self) -> Registers:
        regs = _abi.Regs()
        ioctl_buf(self._fd, _abi.KVM_GET_REGS, regs, "KVM_GET_REGS")
        return Registers(**{n: getattr(regs, n) for n in _REG_FIELDS})

    def set_registers(self, regs: Registers) -> None:
        raw = _abi.Regs(**{n: getattr(regs, n) for n in _REG_FIELDS})
        ioctl_buf(self._fd, _abi.KVM_SET_REGS, raw, "KVM_SET_REGS")

    def get_special_registers(self) -> SpecialRegisters:
        raw = _abi.Sregs()
        ioctl_buf(self._fd, _abi.KVM_GET_SREGS, raw, "KVM_GET_SREGS")
        segs = {n: Segment(**{f: getattr(getattr(raw, n), f) for f in _SEG_FIELDS}) for n in _SEGMENTS}
        return SpecialRegisters(
            **segs,
            gdt=DescriptorTable(raw.gdt.base, raw.gdt.limit),
            idt=DescriptorTable(raw.idt.base, raw.idt.limit),
            cr0=raw.cr0,
            cr2=raw.cr2,
            cr3=raw.cr3,
            cr4=raw.cr4,
            cr8=raw.cr8,
            efer=raw.efer,
            apic_base=raw.apic_base,
        )

    def set_special_registers(self, sregs: SpecialRegisters) -> None:
        raw = _abi.Sregs()
        # Start from KVM's own state so the pending-interrupt bitmap stays what KVM has.
        ioctl_buf(self._fd, _abi.KVM_GET_SREGS, raw, "KVM_GET_SREGS")
        for n in _SEGMENTS:
            seg = getattr(sregs, n)
            target = getattr(raw, n)
            for f in _SEG_FIELDS:
                setattr(target, f, getattr(seg, f))
        raw.gdt.base, raw.gdt.limit = sregs.gdt.base, sregs.gdt.limit
        raw.idt.base, raw.idt.limit = sregs.idt.base, sregs.idt.limit
        for n in ("cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apic_base"):
            setattr(raw, n, getattr(sregs, n))
        ioctl_buf(self._fd, _abi.KVM_SET_SREGS, raw, "KVM_SET_SREGS")

    def set_cpuid(self, entries: Sequence[CpuidEntry]) -> None:
        if len(entries) > _abi.MAX_CPUID_ENTRIES:
            raise HypervisorError(f"{len(entries)} CPUID entries exceed {_abi.MAX_CPUID_ENTRIES}")
        buf = _abi.Cpuid2(nent=len(entries))
        for slot, e in zip(buf.entries, entries, strict=False):
            slot.function, slot.index, slot.flags = e.function, e.index, e.flags
            slot.eax, slot.ebx, slot.ecx, slot.edx = e.eax, e.ebx, e.ecx, e.edx
        ioctl_buf(self._fd, _abi.KVM_SET_CPUID2, buf, "KVM_SET_CPUID2")

    def set_msrs(self, msrs: dict[int, int]) -> None:
        buf = _abi.Msrs(nmsrs=len(msrs))
        for slot, (index, value) in zip(buf.entries, msrs.items(), strict=False):
            slot.index, slot.data = index, value
        done = ioctl_buf(self._fd, _abi.KVM_SET_MSRS, buf, "KVM_SET_MSRS")
        if done != len(msrs):
            bad = list(msrs)[done]
            raise HypervisorError(f"KVM refused MSR {bad:#x} (set {done} of {len(msrs)})")

    def reset_fpu(self) -> None:
        ioctl_buf(self._fd, _abi.KVM_SET_FPU, _abi.Fpu(fcw=0x37F, mxcsr=0x1F80), "KVM_SET_FPU")

    def close(self) -> None:
        if self._fd >= 0:
            self._run.close()
            os.close(self._fd)
            self._fd = -1
