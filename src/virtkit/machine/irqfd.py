"""MSI through irqfd: each distinct MSI message (address, data) a device sends gets a GSI routed to it and
an eventfd bound to that GSI, so raising the interrupt is one eventfd write that KVM turns into the MSI
with no ioctl and no vCPU exit. The table is bounded (a guest could program many messages): past it, and
wherever KVM refuses routing or irqfds, messages go out with KVM_SIGNAL_MSI as before."""

from __future__ import annotations

import contextlib
import logging
import os
import threading

from virtkit.hypervisor.base import HypervisorError, Vm

log = logging.getLogger(__name__)

FIRST_GSI = 24  # after the IOAPIC's pins
MAX_ROUTES = 64


class MsiSender:
    def __init__(self, vm: Vm) -> None:
        self._vm = vm
        self._lock = threading.Lock()
        self._routes: dict[tuple[int, int], tuple[int, int]] = {}  # (address, data) -> (gsi, eventfd)
        self.disabled = False
        self.fallbacks = 0

    def __call__(self, address: int, data: int) -> None:
        key = (address, data)
        route = self._routes.get(key)
        if route is None and not self.disabled:
            route = self._add(key)
        if route is not None:
            os.eventfd_write(route[1], 1)
            return
        self.fallbacks += 1
        try:
            self._vm.signal_msi(address, data)
        except HypervisorError as e:  # the guest programmed a message KVM refuses: it loses that interrupt
            log.warning("MSI %#x/%#x refused: %s", address, data, e)

    def _add(self, key: tuple[int, int]) -> tuple[int, int] | None:
        with self._lock:
            if key in self._routes:
                return self._routes[key]
            if len(self._routes) >= MAX_ROUTES:
                return None
            gsi = FIRST_GSI + len(self._routes)
            routes = {g: k for k, (g, _) in self._routes.items()}
            routes[gsi] = key
            fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            try:
                self._vm.set_msi_routes(routes)
                self._vm.set_irqfd(gsi, fd)
            except HypervisorError as e:
                os.close(fd)
                self.disabled = True
                log.info("irqfd unavailable (%s): MSIs go out with KVM_SIGNAL_MSI", e)
                return None
            self._routes[key] = (gsi, fd)
            return gsi, fd

    def close(self) -> None:
        with self._lock:
            for gsi, fd in self._routes.values():
                with contextlib.suppress(HypervisorError):
                    self._vm.set_irqfd(gsi, fd, assign=False)
                os.close(fd)
            self._routes.clear()
