"""The agent socket bridge: bytes from the client reach the port, guest output reaches the client, a new
client replaces the old one, and closing removes the socket."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from virtkit.machine.agent_socket import SocketBridge


def connect(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(str(path))
    return s


def wait_until(predicate: object) -> None:
    deadline = time.monotonic() + 5
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_bytes_flow_both_ways_and_a_new_client_replaces_the_old(tmp_path: Path) -> None:
    got = bytearray()
    path = tmp_path / "agent.sock"
    bridge = SocketBridge(path, got.extend)
    try:
        bridge.output(b"before anyone listens")  # dropped, never blocks
        a = connect(path)
        a.sendall(b'{"execute":"guest-ping"}\n')
        wait_until(lambda: got == b'{"execute":"guest-ping"}\n')
        wait_until(lambda: bridge._client is not None)
        bridge.output(b'{"return": {}}\n')
        assert a.recv(100) == b'{"return": {}}\n'
        b = connect(path)
        wait_until(lambda: a.recv(10) == b"")  # the old client is closed
        bridge.output(b"x")
        assert b.recv(10) == b"x"
        b.close()
    finally:
        bridge.close()
    assert not path.exists()


def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    path.write_text("stale")
    bridge = SocketBridge(path, lambda data: None)
    try:
        connect(path).close()
    finally:
        bridge.close()
