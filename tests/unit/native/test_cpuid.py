from __future__ import annotations

from virtkit.arch.x86_64.cpuid import HYPERVISOR_BIT, guest_cpuid, paravirt_features
from virtkit.hypervisor.fake import DEFAULT_CPUID


def test_paravirt_leaves_are_kept_and_named() -> None:
    entries = guest_cpuid(list(DEFAULT_CPUID), 0, 1, paravirt=True)
    assert {e.function for e in entries} >= {0x40000000, 0x40000001}
    features = paravirt_features(entries)
    assert "clocksource2" in features and "pv_eoi" in features


def test_no_paravirt_removes_every_kvm_leaf() -> None:
    entries = guest_cpuid(list(DEFAULT_CPUID), 0, 1, paravirt=False)
    assert not [e for e in entries if 0x40000000 <= e.function <= 0x400000FF]
    assert paravirt_features(entries) == []
    assert len(entries) == len(DEFAULT_CPUID) - 2


def test_topology_and_hypervisor_bit_per_vcpu() -> None:
    entries = {e.function: e for e in guest_cpuid(list(DEFAULT_CPUID), 3, 4, paravirt=True)}
    assert entries[1].ebx >> 24 == 3 and (entries[1].ebx >> 16) & 0xFF == 4
    assert entries[1].ecx & HYPERVISOR_BIT
    assert entries[0xB].edx == 3
