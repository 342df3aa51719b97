"""virtio-console with MULTIPORT (virtio 1.2 section 5.3): port 0 is a console (hvc0 in Linux), further ports
are named serial channels such as ``org.qemu.guest_agent.0``. Queues: receiveq/transmitq of port 0, the
control receiveq/transmitq, then receiveq/transmitq of each further port.

Host-to-guest bytes wait in a bounded per-port buffer until the driver offers receive buffers; guest output
goes to the port's ``output`` callback, which must not block. A port whose host side can be slow says how
much it can take now (``room``): while it has none, transmit buffers stay available in the queue (the
guest's writes wait, not a vCPU nor the device lock) and the host side calls ``resume_output`` when it has
drained. Transmit work is bounded per turn like every device's, and one chain may carry at most
``MAX_TX_CHAIN`` bytes. Control messages the driver sends are validated like any buffer.
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from virtkit.memory import GuestMemory
from virtkit.virtio.budget import Budget, Turn
from virtkit.virtio.device import VirtioDevice
from virtkit.virtio.queue import SplitQueue, VirtqueueError

log = logging.getLogger(__name__)

VIRTIO_ID_CONSOLE = 3
VIRTIO_CONSOLE_F_MULTIPORT = 1 << 1
# control events (5.3.6.2)
DEVICE_READY, DEVICE_ADD, DEVICE_REMOVE, PORT_READY = 0, 1, 2, 3
CONSOLE_PORT, RESIZE, PORT_OPEN, PORT_NAME = 4, 5, 6, 7
_CONTROL = struct.Struct("<IHH")
CONTROL_RX, CONTROL_TX = 2, 3
QUEUE_SIZE = 128
# what a port holds for a driver that is not reading: beyond this, host input is dropped (and counted)
MAX_PENDING = 1 << 20
MAX_CONTROL_PENDING = 256
# Linux's virtio_console sends at most 32 KiB per buffer; a longer transmit chain is a driver error
MAX_TX_CHAIN = 256 * 1024


@dataclass
class Port:
    name: str | None  # None: the console port
    output: Callable[[bytes], None]
    room: Callable[[], int] | None = None  # bytes ``output`` takes now without blocking; None: no limit
    pending: bytearray = field(default_factory=bytearray)
    guest_open: bool = False
    dropped: int = 0


def rx_queue(port: int) -> int:
    return 0 if port == 0 else 2 * (port + 1)


def tx_queue(port: int) -> int:
    return 1 if port == 0 else 2 * (port + 1) + 1


class Console(VirtioDevice):
    device_id = VIRTIO_ID_CONSOLE
    name = "virtio-console"
    device_features = VIRTIO_CONSOLE_F_MULTIPORT
    budget = Budget(chains=QUEUE_SIZE, bytes=1 << 20, seconds=0.005)

    def __init__(self, ports: list[Port]) -> None:
        if not ports or ports[0].name is not None:
            raise ValueError("port 0 is the console port (no name)")
        self.queue_sizes = (QUEUE_SIZE,) * (2 * (len(ports) + 1))
        self.ports = ports
        self._control_out: deque[bytes] = deque()
        super().__init__()

    # --- host side ------------------------------------------------------------------------------------------

    def input(self, port: int, data: bytes) -> int:
        """Queue ``data`` for the guest on ``port``; returns how many bytes were accepted. Thread-safe."""
        with self.lock:
            p = self.ports[port]
            room = MAX_PENDING - len(p.pending)
            accepted = data[: max(0, room)]
            p.dropped += len(data) - len(accepted)
            p.pending += accepted
            self.guarded(f"input to port {port}", lambda: self._flush_input(port))
            return len(accepted)

    def resume_output(self, port: int) -> None:
        """The port's host side drained: serve the transmit queue it held back. Thread-safe, never raises."""
        self.notify(tx_queue(port))

    def port_by_name(self, name: str) -> int:
        return next(i for i, p in enumerate(self.ports) if p.name == name)

    # --- config space: cols, rows, max_nr_ports, emerg_wr --------------------------------------------------

    def read_config(self, offset: int, size: int) -> bytes:
        raw = struct.pack("<HHII", 0, 0, len(self.ports), 0)
        return raw[offset : offset + size].ljust(size, b"\0")

    # --- queues ---------------------------------------------------------------------------------------------

    def on_reset(self) -> None:
        self._control_out.clear()
        for p in self.ports:
            p.pending.clear()
            p.guest_open = False

    def process(self, index: int, queue: SplitQueue, memory: GuestMemory, turn: Turn) -> bool:
        if index == CONTROL_RX:
            self._flush_control()
        elif index == CONTROL_TX:
            return self._control_messages(queue, memory, turn)
        else:
            port = 0 if index < 2 else index // 2 - 1
            if index % 2:
                return self._transmit(port, queue, memory, turn)
            self._flush_input(port)
        return False

    def _transmit(self, port: int, queue: SplitQueue, memory: GuestMemory, turn: Turn) -> bool:
        index = tx_queue(port)
        p = self.ports[port]
        while not turn.exhausted:
            if p.room is not None and p.room() <= 0:
                return False  # back-pressure: the buffers stay available until resume_output
            chain = queue.pop(memory)
            if chain is None:
                return False
            if chain.writable:
                raise VirtqueueError(f"{self.name}: a transmit buffer is device-writable")
            if chain.readable_length > MAX_TX_CHAIN:
                raise VirtqueueError(f"{self.name}: a transmit chain of {chain.readable_length} bytes")
            data = chain.read(memory)
            self.complete(index, chain.head, 0)
            turn.spend(len(data))
            try:
                p.output(data)
            except Exception:  # a broken host consumer is not the guest's fault, nor a reason to stop
                log.exception("%s: port %d output failed", self.name, port)
        return queue.has_available(memory)

    def _flush_input(self, port: int) -> None:
        """Move held host input into the port's receive buffers: bounded by MAX_PENDING and the queue size.
        Callers contain guest errors (``guarded`` or a turn)."""
        p = self.ports[port]
        # Linux drops what arrives on a port no process has open: hold it until one does
        if not p.pending or not p.guest_open:
            return
        index = rx_queue(port)
        queue = self.served_queue(index)
        if queue is None or self.memory is None:
            return
        while p.pending and (chain := queue.pop(self.memory)) is not None:
            if chain.readable:
                raise VirtqueueError(f"{self.name}: a receive buffer is device-readable")
            n = chain.write(self.memory, bytes(p.pending[: chain.writable_length]))
            del p.pending[:n]
            self.complete(index, chain.head, n)

    # --- control -------------------------------------------------------------------------------------------

    def _send_control(self, port: int, event: int, value: int, extra: bytes = b"") -> None:
        if len(self._control_out) < MAX_CONTROL_PENDING:  # a driver that never reads cannot grow this
            self._control_out.append(_CONTROL.pack(port, event, value) + extra)
        self._flush_control()

    def _flush_control(self) -> None:
        queue = self.served_queue(CONTROL_RX)
        if queue is None or self.memory is None:
            return
        while self._control_out and (chain := queue.pop(self.memory)) is not None:
            if chain.readable:
                raise VirtqueueError(f"{self.name}: a control receive buffer is device-readable")
            message = self._control_out.popleft()
            self.complete(CONTROL_RX, chain.head, chain.write(self.memory, message))

    def _control_messages(self, queue: SplitQueue, memory: GuestMemory, turn: Turn) -> bool:
        while not turn.exhausted and (chain := queue.pop(memory)) is not None:
            if chain.writable:
                raise VirtqueueError(f"{self.name}: a control message buffer is device-writable")
            raw = chain.read(memory, _CONTROL.size)
            self.complete(CONTROL_TX, chain.head, 0)
            turn.spend(len(raw))
            if len(raw) < _CONTROL.size:
                raise VirtqueueError(f"{self.name}: a control message of {len(raw)} bytes")
            self._control(*_CONTROL.unpack(raw))
        return turn.exhausted and queue.has_available(memory)

    def _control(self, port: int, event: int, value: int) -> None:
        if event == DEVICE_READY:
            if value != 1:
                log.warning("%s: the driver failed to set up", self.name)
                return
            for i in range(len(self.ports)):
                self._send_control(i, DEVICE_ADD, 0)
            return
        if port >= len(self.ports):
            log.warning("%s: control event %d for port %d, which does not exist", self.name, event, port)
            return
        p = self.ports[port]
        if event == PORT_READY and value == 1:
            if p.name is None:
                self._send_control(port, CONSOLE_PORT, 1)
            else:
                self._send_control(port, PORT_NAME, 1, p.name.encode())
            self._send_control(port, PORT_OPEN, 1)  # the host end is always open: sockets come and go
        elif event == PORT_OPEN:
            p.guest_open = bool(value)
            if p.guest_open:
                self._flush_input(port)
