"""Whatever a guest writes to any port or MMIO address, the VMM's devices answer and nothing raises."""

from __future__ import annotations

from pathlib import Path

import pytest
from guestkernels import make_bzimage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from virtkit.hypervisor.base import Exit, IoIn, IoOut, MmioRead, MmioWrite
from virtkit.hypervisor.fake import FakeHypervisor, FakeVcpu
from virtkit.machine.builder import build
from virtkit.machine.config import VmmConfig
from virtkit.machine.vmm import Vmm

sizes = st.sampled_from([1, 2, 4])
ports = st.one_of(st.integers(0, 0xFFFF), st.sampled_from([0x3F8, 0x3FD, 0x3FA, 0x64, 0x60, 0x70, 0x71, 0x604]))
exits = st.one_of(
    st.builds(
        lambda p, s, d: IoOut(p, s, d[: s * (len(d) // s or 1)].ljust(s, b"\0")),
        ports,
        sizes,
        st.binary(min_size=1, max_size=16),
    ),
    st.builds(IoIn, ports, sizes, st.integers(1, 8)),
    st.builds(MmioWrite, st.integers(0, (1 << 48) - 1), st.binary(min_size=1, max_size=8)),
    st.builds(MmioRead, st.integers(0, (1 << 48) - 1), st.sampled_from([1, 2, 4, 8])),
)


@pytest.fixture(scope="module")
def vmm(tmp_path_factory: pytest.TempPathFactory) -> Vmm:
    kernel: Path = tmp_path_factory.mktemp("k") / "bzImage"
    kernel.write_bytes(make_bzimage(b"\xf4" * 0x400))
    return build(VmmConfig(kernel, memory_mib=32), FakeHypervisor(), lambda b: None, mem_available_mib=1024)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(exits, max_size=40))
def test_random_device_traffic_never_raises(vmm: Vmm, script: list[Exit]) -> None:
    vcpu = FakeVcpu(0)
    for exit in script:
        outcome = vmm.dispatcher.handle(vcpu, exit)
        assert outcome is None  # only the VMM's finish() callbacks end a machine, never an exception
    expected = [e.size * e.items if isinstance(e, IoIn) else e.size for e in script if isinstance(e, IoIn | MmioRead)]
    assert [len(a) for a in vcpu.answers] == expected
    assert vmm.dispatcher.device_errors == 0
