"""ioeventfd wiring: one eventfd per queue on the notify addresses where the BAR decodes, moved with the BAR,
served by the notifier thread (real eventfds, fake VM)."""

from __future__ import annotations

import os
import threading
import time

from virtkit.devices.pci.root import PciRoot
from virtkit.devices.trigger import RecordingTrigger
from virtkit.hypervisor.base import HypervisorError
from virtkit.hypervisor.fake import FakeVm
from virtkit.machine.notifier import Notifier
from virtkit.virtio import pci
from virtkit.virtio.rng import Rng


def test_notifier_runs_the_callback_when_the_eventfd_fires() -> None:
    vm = FakeVm()
    notifier = Notifier(vm)
    hit = threading.Event()
    try:
        assert notifier.register(0xE0003000, hit.set)
        os.eventfd_write(vm.ioeventfds[0xE0003000], 1)  # what KVM does on the guest's write
        assert hit.wait(5)
        notifier.unregister(0xE0003000)
        assert vm.ioeventfds == {}
    finally:
        notifier.close()


def test_a_refused_ioeventfd_leaves_the_exit_path() -> None:
    class Refusing(FakeVm):
        def set_ioeventfd(self, address: int, length: int, fd: int, assign: bool = True) -> None:
            raise HypervisorError("KVM_IOEVENTFD failed: no")

    notifier = Notifier(Refusing())
    try:
        assert not notifier.register(0xE0003000, lambda: None) and notifier.refused == 1
    finally:
        notifier.close()


def test_eventfds_follow_the_bar() -> None:
    vm = FakeVm()
    notifier = Notifier(vm)
    try:
        root = PciRoot()
        rng = Rng()
        fn = pci.VirtioPci(rng, root.allocate_bar(pci.BAR_SIZE), vm.signal_msi, RecordingTrigger(), 10, notifier)
        assert vm.ioeventfds == {}  # memory decoding is off
        fn.config.write(4, 2, 0x6)
        assert set(vm.ioeventfds) == {0xE0000000 + pci.NOTIFY_OFFSET}
        fn.config.write(0x10, 4, 0xE0100000)  # the guest moves the BAR
        assert set(vm.ioeventfds) == {0xE0100000 + pci.NOTIFY_OFFSET}
        fn.config.write(4, 2, 0)
        assert vm.ioeventfds == {}
        calls: list[int] = []
        rng.notify = calls.append  # type: ignore[method-assign]  # bound when wired: patch first
        fn.config.write(4, 2, 0x6)
        os.eventfd_write(vm.ioeventfds[0xE0100000 + pci.NOTIFY_OFFSET], 1)
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert calls == [0]
        fn.unwire()
        assert vm.ioeventfds == {}
    finally:
        notifier.close()
