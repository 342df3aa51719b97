"""MSI through irqfd on the fake VM: one route and eventfd per distinct message, bounded, with
KVM_SIGNAL_MSI where the table is full or KVM refuses."""

from __future__ import annotations

import os

from virtkit.hypervisor.base import HypervisorError
from virtkit.hypervisor.fake import FakeVm
from virtkit.machine import irqfd
from virtkit.machine.irqfd import MsiSender


def test_each_message_gets_a_route_and_an_eventfd() -> None:
    vm = FakeVm()
    send = MsiSender(vm)
    try:
        send(0xFEE00000, 0x41)
        send(0xFEE00000, 0x41)
        send(0xFEE01000, 0x42)
        assert vm.msi_routes == {24: (0xFEE00000, 0x41), 25: (0xFEE01000, 0x42)}
        assert os.eventfd_read(vm.irqfds[24]) == 2 and os.eventfd_read(vm.irqfds[25]) == 1
        assert vm.msi_events == [] and send.fallbacks == 0
    finally:
        send.close()
    assert vm.irqfds == {}


def test_a_full_table_falls_back_to_signal_msi() -> None:
    vm = FakeVm()
    send = MsiSender(vm)
    try:
        for i in range(irqfd.MAX_ROUTES + 3):
            send(0xFEE00000, 0x30 + i)
        assert len(vm.msi_routes) == irqfd.MAX_ROUTES
        assert vm.msi_events == [(0xFEE00000, 0x30 + i) for i in range(irqfd.MAX_ROUTES, irqfd.MAX_ROUTES + 3)]
    finally:
        send.close()


def test_refused_routing_disables_irqfd_and_refused_msis_are_dropped() -> None:
    class Refusing(FakeVm):
        def set_msi_routes(self, routes: dict[int, tuple[int, int]]) -> None:
            raise HypervisorError("KVM_SET_GSI_ROUTING failed")

        def signal_msi(self, address: int, data: int) -> None:
            if address != 0xFEE00000:
                raise HypervisorError("KVM_SIGNAL_MSI failed")
            super().signal_msi(address, data)

    vm = Refusing()
    send = MsiSender(vm)
    send(0xFEE00000, 0x41)
    send(0x1234, 0x41)  # a message KVM refuses: the guest loses it, the VMM carries on
    assert send.disabled and vm.msi_events == [(0xFEE00000, 0x41)] and send.fallbacks == 2
    send.close()
