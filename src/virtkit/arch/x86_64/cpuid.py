"""The CPUID a guest sees: what KVM supports, with topology filled in per vCPU and KVM's paravirtual
leaves (0x40000000: kvm-clock, PV EOI, async PF, steal time, ...) kept or removed."""

from __future__ import annotations

from dataclasses import replace

from virtkit.hypervisor.base import CpuidEntry

KVM_LEAF_BASE = 0x40000000
KVM_LEAF_LAST = 0x400000FF
HYPERVISOR_BIT = 1 << 31  # leaf 1 ECX: "running under a hypervisor"

# KVM_CPUID_FEATURES (leaf 0x40000001 EAX) bit names, for reports
KVM_FEATURES = {
    0: "clocksource",
    1: "nop_io_delay",
    3: "clocksource2",
    4: "async_pf",
    5: "steal_time",
    6: "pv_eoi",
    7: "pv_unhalt",
    9: "pv_tlb_flush",
    10: "async_pf_vmexit",
    11: "pv_send_ipi",
    12: "poll_control",
    13: "pv_sched_yield",
    14: "async_pf_int",
    15: "msi_ext_dest_id",
    24: "clocksource_stable",
}


def guest_cpuid(supported: list[CpuidEntry], vcpu: int, vcpus: int, paravirt: bool) -> list[CpuidEntry]:
    out: list[CpuidEntry] = []
    for e in supported:
        if KVM_LEAF_BASE <= e.function <= KVM_LEAF_LAST and not paravirt:
            continue
        if e.function == 0x1:
            ebx = (e.ebx & 0x0000FFFF) | ((vcpus & 0xFF) << 16) | ((vcpu & 0xFF) << 24)
            e = replace(e, ebx=ebx, ecx=e.ecx | HYPERVISOR_BIT)
        elif e.function in (0xB, 0x1F):
            e = replace(e, edx=vcpu)
        out.append(e)
    return out


def paravirt_features(entries: list[CpuidEntry]) -> list[str]:
    """Names of the KVM paravirtual features these entries expose (empty when the leaves are gone)."""
    for e in entries:
        if e.function == KVM_LEAF_BASE + 1:
            return [name for bit, name in KVM_FEATURES.items() if e.eax >> bit & 1]
    return []
