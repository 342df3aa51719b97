"""Attach the terminal to a machine's serial console (Ctrl-] detaches): a local socket or the daemon's websocket."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
import termios
import threading
import tty
from collections.abc import Callable, Iterable
from pathlib import Path

DETACH = b"\x1d"  # Ctrl-]


def attach_stream(send: Callable[[bytes], object], incoming: Iterable[bytes | str]) -> None:
    """Copy ``incoming`` to stdout (a thread) and stdin to ``send`` (raw mode on a terminal) until either side
    ends or the user types Ctrl-]."""
    stdin = sys.stdin.fileno()
    old = termios.tcgetattr(stdin) if os.isatty(stdin) else None
    done = threading.Event()

    def pump() -> None:
        with contextlib.suppress(Exception):
            for msg in incoming:
                os.write(sys.stdout.fileno(), msg if isinstance(msg, bytes) else msg.encode())
        done.set()

    threading.Thread(target=pump, daemon=True, name="console-out").start()
    try:
        if old is not None:
            tty.setraw(stdin)
        while not done.is_set():
            ready, _, _ = select.select([stdin], [], [], 0.2)
            if not ready:
                continue
            data = os.read(stdin, 1024)
            if not data or DETACH in data:
                if data.split(DETACH)[0]:
                    send(data.split(DETACH)[0])
                break
            send(data)
    finally:
        if old is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, old)
        sys.stderr.write("\r\nvirtkit: detached from the console\r\n")


def attach(sock_path: Path) -> None:
    """The console socket of a machine this process runs (``virtkit run --keep``)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(sock_path))
    sys.stderr.write("virtkit: connected to the console; Ctrl-] detaches\r\n")
    try:
        attach_stream(sock.sendall, iter(lambda: sock.recv(4096), b""))
    finally:
        with contextlib.suppress(OSError):
            sock.close()
