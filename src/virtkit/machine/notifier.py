"""ioeventfd: the guest's queue notifications (writes to a virtio notify address) signal an eventfd inside
KVM, so the vCPU goes straight back to the guest; this thread reads the eventfds and serves the queues.
Where KVM refuses an ioeventfd the write still exits and reaches the device through the MMIO bus.

The same thread runs the devices' deferred turns (``call_soon``): a queue with more work than one turn's
budget goes to the back of the line, so every queue and every device gets its turn in order."""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import threading
from collections import deque
from collections.abc import Callable

from virtkit.hypervisor.base import HypervisorError, Vm

log = logging.getLogger(__name__)

NOTIFY_WIDTH = 2  # Linux's virtio_pci writes the 16-bit queue index


class Notifier:
    def __init__(self, vm: Vm) -> None:
        self._vm = vm
        self._sel = selectors.DefaultSelector()
        self._fds: dict[int, int] = {}  # guest address -> eventfd
        self._lock = threading.Lock()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._sel.register(self._wake, selectors.EVENT_READ, None)
        self._closing = False
        self._soon: deque[Callable[[], None]] = deque()
        self.refused = 0
        self._thread = threading.Thread(target=self._loop, name="ioeventfd", daemon=True)
        self._thread.start()

    def register(self, address: int, callback: Callable[[], None]) -> bool:
        """Serve writes to ``address`` from this thread; False when KVM refused (the exit path remains)."""
        fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        try:
            self._vm.set_ioeventfd(address, NOTIFY_WIDTH, fd)
        except HypervisorError as e:
            os.close(fd)
            self.refused += 1
            log.info("ioeventfd at %#x refused (%s): notifications exit to the VMM", address, e)
            return False
        with self._lock:
            self._fds[address] = fd
            self._sel.register(fd, selectors.EVENT_READ, callback)
        return True

    def unregister(self, address: int) -> None:
        with self._lock:
            fd = self._fds.pop(address, None)
            if fd is None:
                return
            self._sel.unregister(fd)
        with contextlib.suppress(HypervisorError):
            self._vm.set_ioeventfd(address, NOTIFY_WIDTH, fd, assign=False)
        os.close(fd)

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on this thread after what is already waiting (a device's deferred turn)."""
        if self._closing:
            return
        self._soon.append(callback)
        os.eventfd_write(self._wake, 1)

    def _loop(self) -> None:
        while not self._closing:
            for key, _ in self._sel.select():
                fd = key.fd
                try:
                    os.eventfd_read(fd)
                except (BlockingIOError, OSError):
                    continue
                if key.data is None:
                    self._run_soon()
                    continue
                self._call(key.data)

    def _run_soon(self) -> None:
        for _ in range(len(self._soon)):  # only what was queued before: a callback may queue itself again
            if self._closing:
                return
            self._call(self._soon.popleft())

    @staticmethod
    def _call(callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:  # a device bug must not end notifications for every device
            log.exception("queue notification handler failed")

    def close(self) -> None:
        self._closing = True
        os.eventfd_write(self._wake, 1)
        self._thread.join(5)
        for address in list(self._fds):
            self.unregister(address)
        self._sel.close()
        os.close(self._wake)
