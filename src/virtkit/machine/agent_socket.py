"""A unix socket bridged to one virtio-console port (the guest agent's), so ``AgentClient`` talks to the
native engine exactly as it talks to QEMU's ``-chardev socket``. One client at a time: a new connection
replaces the old one, as a QEMU chardev server does.

Nothing the guest or the client does may stop this bridge: guest output is buffered (``MAX_OUTPUT`` bytes)
and sent by the bridge's own thread, never by the vCPU or notifier thread that produced it; the console port
reads ``room`` and stops taking transmit buffers while the client is slow, and ``on_drain`` resumes it. A
failure delivering client bytes to the guest is logged and the bridge carries on; it outlives every guest
reset and reboot."""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from virtkit.errors import HostError
from virtkit.ipc import listen_unix

log = logging.getLogger(__name__)

MAX_OUTPUT = 256 * 1024  # guest bytes held for a slow client before the port applies back-pressure
RECV_SIZE = 65536


def listen(path: Path) -> SocketBridge:
    """The bridge for a machine's agent socket, or a HostError naming the path."""
    try:
        return SocketBridge(path, lambda data: None)
    except OSError as e:
        raise HostError(
            f"cannot listen on the agent socket {path}: {e.strerror}",
            hint="pass a path in an existing, writable directory",
        ) from e


def _nothing() -> None:
    pass


def _discard(data: bytes) -> None:
    pass


class SocketBridge:
    """Outlives the machines a Runner builds (a guest reboot keeps the client connected, as with QEMU):
    each build points ``deliver`` at its console port (and ``on_drain`` at the port's ``resume_output``)
    and detaches them when the machine closes."""

    def __init__(self, path: Path, deliver: Callable[[bytes], object]) -> None:
        """``deliver`` takes bytes from the client to the guest (``Console.input`` for the port)."""
        self.path = path
        self.deliver = deliver
        self.on_drain: Callable[[], None] = _nothing
        self._client: socket.socket | None = None
        self._out = bytearray()  # guest bytes not yet sent to the client
        self._lock = threading.Lock()
        self._closing = False
        self.errors = 0
        self._listener = listen_unix(path, 4)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._loop, name=f"bridge:{path.name}", daemon=True)
        self._thread.start()

    def detach(self) -> None:
        """The machine closed: client bytes go nowhere until the next build attaches its port."""
        self.deliver = _discard
        self.on_drain = _nothing

    # --- guest -> client (called from device threads; never blocks) ------------------------------------------

    def room(self) -> int:
        """How many guest bytes ``output`` takes now; the port holds its transmit buffers at 0."""
        with self._lock:
            return MAX_OUTPUT - len(self._out) if self._client is not None else MAX_OUTPUT

    def output(self, data: bytes) -> None:
        """Guest bytes for the client; dropped when nobody is connected (the agent resynchronises)."""
        with self._lock:
            client = self._client
            if client is None:
                return
            if not self._out:  # the common case: the client keeps up and the kernel takes it all now
                try:
                    sent = client.send(data)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    sent = len(data)  # the client is gone: the bridge thread notices and drops it
                data = data[sent:]
            if not data:
                return
            self._out += data
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):  # a full wake pipe is already a wake-up
            self._wake_w.send(b"x")

    def _flush(self, client: socket.socket) -> bool:
        """Send what the client takes now (bridge thread); True once everything is out."""
        with self._lock:
            if self._client is not client:
                return True
            try:
                sent = client.send(self._out)
            except BlockingIOError:
                sent = 0
            del self._out[:sent]
            return not self._out

    # --- the bridge thread -------------------------------------------------------------------------------------

    def _drop(self, client: socket.socket) -> None:
        with self._lock:
            if self._client is client:
                self._client = None
                self._out.clear()
        client.close()

    def _loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ, "accept")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while not self._closing:
                try:
                    self._step(sel)
                except Exception:  # the bridge must outlive anything a guest or a client does
                    self.errors += 1
                    log.exception("agent socket bridge %s: error (carrying on)", self.path)
                    time.sleep(0.01)
        finally:
            sel.close()

    def _step(self, sel: selectors.BaseSelector) -> None:
        with self._lock:
            client, waiting = self._client, bool(self._out)
        if client is not None:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if waiting else 0)
            with contextlib.suppress(KeyError, ValueError):
                sel.modify(client, events, "client")
        for key, mask in sel.select():
            if key.data == "wake":
                with contextlib.suppress(BlockingIOError, OSError):
                    self._wake_r.recv(4096)
                continue
            if key.data == "accept":
                self._accept(sel)
                continue
            conn = key.fileobj
            assert isinstance(conn, socket.socket)
            if mask & selectors.EVENT_WRITE:
                try:
                    drained = self._flush(conn)
                except OSError:
                    self._unregister(sel, conn)
                    continue
                if drained:
                    self._resume_port()
            if mask & selectors.EVENT_READ:
                self._receive(sel, conn)

    def _accept(self, sel: selectors.BaseSelector) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        conn.setblocking(False)
        with self._lock:
            old, self._client = self._client, conn
            self._out.clear()
        if old is not None:
            self._unregister(sel, old)
        sel.register(conn, selectors.EVENT_READ, "client")
        self._resume_port()  # what waited for the old client's room may go to the new one

    def _receive(self, sel: selectors.BaseSelector, conn: socket.socket) -> None:
        try:
            data = conn.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._unregister(sel, conn)
            return
        try:
            self.deliver(data)
        except Exception:  # the device contains guest errors; anything else is logged, not fatal
            self.errors += 1
            log.exception("agent socket bridge %s: delivering to the guest failed", self.path)

    def _unregister(self, sel: selectors.BaseSelector, conn: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(conn)
        self._drop(conn)
        self._resume_port()  # nobody to wait for now: held transmit buffers go (and are dropped)

    def _resume_port(self) -> None:
        try:
            self.on_drain()
        except Exception:
            self.errors += 1
            log.exception("agent socket bridge %s: resuming the port failed", self.path)

    def close(self) -> None:
        self._closing = True
        self._wake()
        self._thread.join(5)
        with self._lock:
            client, self._client = self._client, None
        for s in (client, self._listener, self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
