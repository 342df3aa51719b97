"""A unix socket bridged to one virtio-console port (the guest agent's), so ``AgentClient`` talks to the
native engine exactly as it talks to QEMU's ``-chardev socket``. One client at a time: a new connection
replaces the old one, as a QEMU chardev server does."""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from virtkit.errors import HostError
from virtkit.ipc import listen_unix

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 2.0


def listen(path: Path) -> SocketBridge:
    """The bridge for a machine's agent socket, or a HostError naming the path."""
    try:
        return SocketBridge(path, lambda data: None)
    except OSError as e:
        raise HostError(
            f"cannot listen on the agent socket {path}: {e.strerror}",
            hint="pass a path in an existing, writable directory",
        ) from e


class SocketBridge:
    """Outlives the machines a Runner builds (a guest reboot keeps the client connected, as with QEMU):
    each build points ``deliver`` at its console port and detaches it when the machine closes."""

    def __init__(self, path: Path, deliver: Callable[[bytes], object]) -> None:
        """``deliver`` takes bytes from the client to the guest (``Console.input`` for the port)."""
        self.path = path
        self.deliver = deliver
        self._client: socket.socket | None = None
        self._lock = threading.Lock()
        self._closing = False
        self._listener = listen_unix(path, 4)
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._loop, name=f"bridge:{path.name}", daemon=True)
        self._thread.start()

    def output(self, data: bytes) -> None:
        """Guest bytes for the client; dropped when nobody is connected (the agent resynchronises)."""
        with self._lock:
            client = self._client
        if client is None:
            return
        try:
            client.sendall(data)
        except OSError:
            self._drop(client)

    def _drop(self, client: socket.socket) -> None:
        with self._lock:
            if self._client is client:
                self._client = None
        client.close()

    def _loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ, "accept")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while not self._closing:
                for key, _ in sel.select():
                    if key.data == "wake":
                        return
                    if key.data == "accept":
                        conn, _ = self._listener.accept()
                        conn.settimeout(SEND_TIMEOUT_S)
                        with self._lock:
                            old, self._client = self._client, conn
                        if old is not None:
                            sel.unregister(old)
                            old.close()
                        sel.register(conn, selectors.EVENT_READ, "client")
                        continue
                    client = key.fileobj
                    assert isinstance(client, socket.socket)
                    try:
                        data = client.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        sel.unregister(client)
                        self._drop(client)
                        continue
                    self.deliver(data)
        except Exception:  # the bridge must never take the VMM down
            log.exception("agent socket bridge %s failed", self.path)
        finally:
            sel.close()

    def close(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._thread.join(5)
        with self._lock:
            client, self._client = self._client, None
        for s in (client, self._listener, self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
