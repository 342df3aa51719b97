"""Unmodified Debian Linux on virtkit's native engine, inside the nested L1 (AMD-V emulated by QEMU TCG)."""

from __future__ import annotations

import importlib.util

import pytest
from tests.support import nested

pytestmark = pytest.mark.nested


def test_native_engine_boots_debian_cloud_kernel_in_l1(l1_ready: nested.BootArtefacts) -> None:
    if importlib.util.find_spec("virtkit.engines.native_main") is None:
        pytest.skip("virtkit.engines.native_main is not importable yet (the native engine's entry point)")
    l2 = nested.l2_artefacts()
    boots, res = nested.boot_l2_in_l1(["native"], 1, timeout=420)
    print(f"L1 ready {res.timings.ready_s:.1f} s; native L2 boot (host clock): {[b.seconds for b in boots]}")
    [boot] = boots
    lines = [ln.strip() for ln in boot.output.splitlines()]
    assert nested.L2_MARKER in lines, boot.output[-3000:]
    assert lines[lines.index(nested.L2_MARKER) + 1] == l2.release, boot.output[-3000:]
    assert boot.returncode == 0, boot.output[-3000:]
