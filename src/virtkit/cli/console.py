"""Attach the terminal to a machine's serial console socket (Ctrl-] detaches)."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
import termios
import tty
from pathlib import Path

DETACH = b"\x1d"  # Ctrl-]


def attach(sock_path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(sock_path))
    stdin = sys.stdin.fileno()
    old = termios.tcgetattr(stdin) if os.isatty(stdin) else None
    sys.stderr.write("virtkit: connected to the console; Ctrl-] detaches\r\n")
    try:
        if old is not None:
            tty.setraw(stdin)
        while True:
            ready, _, _ = select.select([stdin, sock], [], [])
            if sock in ready:
                data = sock.recv(4096)
                if not data:
                    break
                os.write(sys.stdout.fileno(), data)
            if stdin in ready:
                data = os.read(stdin, 1024)
                if not data or DETACH in data:
                    sock.sendall(data.split(DETACH)[0])
                    break
                sock.sendall(data)
    finally:
        if old is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, old)
        with contextlib.suppress(OSError):
            sock.close()
        sys.stderr.write("\r\nvirtkit: detached from the console\r\n")
