"""virtio-pci on the native VMM, seen from a test kernel on /dev/kvm: enumeration through 0xCF8/0xCFC, a
virtio-rng round trip with an MSI-X interrupt, and a hostile driver that cannot crash or hang the VMM."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from native_harness import Boot

from virtkit.machine.config import Outcome

RNG_OK = re.compile(r"virtio-rng: status=0x0f used=1 bytes=64 nonzero=1 msi=1\n")


def test_pci_enumeration_and_rng_round_trip(boot: Callable[..., Boot], test_kernels: dict[str, Path]) -> None:
    b = boot(test_kernels["bzimage"], "console=ttyS0 virtio reset", on_reset="exit")
    outcome = b.wait(60)
    text = b.text()
    assert outcome == Outcome("reset", "i8042 reset"), text
    assert "pci: 00:0x00.0 0x8086:0x1237 class=0x060000\n" in text  # the host bridge
    assert "pci: 00:0x01.0 0x1af4:0x1044 class=0xff0000\n" in text  # virtio-rng, modern id
    assert "virtio: bar0=0xe0000000 notify_mult=4 caps=ok\n" in text
    assert RNG_OK.search(text), text
    stats = b.runner.last_statistics
    assert stats is not None and stats.device_errors == 0


def test_without_virtio_rng_the_bus_has_only_the_host_bridge(
    boot: Callable[..., Boot], test_kernels: dict[str, Path]
) -> None:
    b = boot(test_kernels["bzimage"], "console=ttyS0 virtio reset", on_reset="exit", virtio_rng=False)
    assert b.wait(60).kind == "reset"
    assert "virtio: no rng\n" in b.text() and "0x1af4" not in b.text()


@pytest.mark.timeout(180)
def test_hostile_driver_only_gets_the_device_reset(boot: Callable[..., Boot], test_kernels: dict[str, Path]) -> None:
    b = boot(test_kernels["bzimage"], "console=ttyS0 virtio-hostile reset", on_reset="exit")
    outcome = b.wait(150)
    text = b.text()
    assert outcome == Outcome("reset", "i8042 reset"), text
    for case in ("loop", "outside-ram", "oversize", "avail-jump", "wrong-direction", "bad-next"):
        # the driver brought the device up, offered the bad chain: DEVICE_NEEDS_RESET, nothing used
        assert f"hostile: {case} start=0x0f status=0x4f used=0\n" in text, text
    assert "hostile: rings-outside-ram start=0x4f status=0x4f used=0\n" in text, text
    assert "hostile: garbage done\n" in text
    # and after a reset the device works again
    assert re.search(r"hostile: after: status=0x0f used=1 bytes=64 nonzero=1 msi=1\n", text), text
    stats = b.runner.last_statistics
    assert stats is not None and stats.device_errors == 0
