"""virtio-rng (virtio 1.2 section 5.4): one queue; each chain is device-writable buffers the device fills
with bytes from the host's CSPRNG. The short exemplary device."""

from __future__ import annotations

import os

from virtkit.memory import GuestMemory
from virtkit.virtio.budget import Budget, Turn
from virtkit.virtio.device import VirtioDevice
from virtkit.virtio.queue import SplitQueue, VirtqueueError

VIRTIO_ID_RNG = 4
# a hostile driver may offer 16 MiB chains: give at most this much per request, as QEMU does (it rate-limits)
MAX_REQUEST = 64 * 1024


class Rng(VirtioDevice):
    device_id = VIRTIO_ID_RNG
    name = "virtio-rng"
    queue_sizes = (256,)
    budget = Budget(chains=256, bytes=1 << 20, seconds=0.005)

    def __init__(self) -> None:
        super().__init__()
        self.bytes_served = 0
        self.requests = 0

    def process(self, index: int, queue: SplitQueue, memory: GuestMemory, turn: Turn) -> bool:
        completed = False
        while not turn.exhausted and (chain := queue.pop(memory)) is not None:
            if chain.readable:
                raise VirtqueueError("virtio-rng request has device-readable buffers")
            written = chain.write(memory, os.urandom(min(chain.writable_length, MAX_REQUEST)))
            queue.push(memory, chain.head, written)
            turn.spend(written)
            self.bytes_served += written
            self.requests += 1
            completed = True
        if completed and queue.needs_interrupt(memory):
            self.interrupt.queue(index)
        return turn.exhausted and queue.has_available(memory)
