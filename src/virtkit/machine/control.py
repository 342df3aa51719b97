"""The VMM process's control channel (requests over :mod:`virtkit.ipc`) and its console socket.

Control requests (op, args -> result)::

    status                          -> {"state": "running", "boots": 1, "exits": {...}, ...}
    pause / resume / stop / reboot  -> {"state": ...}
    powerdown                       -> {"pressed": true}  (the ACPI power button)
    input {"data_b64": "..."}       -> {"sent": 4}        (console input, fed as the UART drains)

The console socket is a plain byte stream: it sends what the guest writes to every client and feeds what
clients send to the UART.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import socket
from pathlib import Path
from typing import Protocol

from virtkit import ipc
from virtkit.errors import ConfigError
from virtkit.machine.runner import Runner


class UnixServer(Protocol):
    def close(self) -> None: ...


class ControlServer:
    def __init__(self, path: Path, runner: Runner) -> None:
        self.runner = runner
        self._server = ipc.Server(path, self.handle)

    def handle(self, request: ipc.Request) -> dict[str, object]:
        runner = self.runner
        match request.op:
            case "status":
                return runner.status()
            case "pause":
                runner.pause()
            case "resume":
                runner.resume()
            case "stop":
                runner.stop()
            case "reboot":
                runner.reboot()
            case "powerdown":
                return {"pressed": runner.power_button()}
            case "input":
                return {"sent": runner.send_input(_bytes_arg(request.args, "data_b64"))}
            case op:
                raise ConfigError(f"unknown control op {op!r}", hint="see virtkit.machine.control for the ops")
        return {"state": runner.state}

    def close(self) -> None:
        self._server.close()


def _bytes_arg(args: dict[str, object], name: str) -> bytes:
    value = args.get(name)
    if not isinstance(value, str):
        raise ConfigError(f"this op needs a base64 string {name!r}")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as e:
        raise ConfigError(f"{name!r} is not base64: {e}") from e


class ConsoleServer:
    def __init__(self, path: Path, runner: Runner) -> None:
        self.runner = runner
        self._listener = ipc.Listener(path, self.serve, backlog=8)

    def serve(self, conn: socket.socket) -> None:
        def send(data: bytes) -> None:
            # called on the vCPU thread: a slow reader loses output rather than stalling the guest
            with contextlib.suppress(BlockingIOError):
                conn.send(data, socket.MSG_DONTWAIT)

        self.runner.console.add_listener(send)
        try:
            while data := conn.recv(4096):
                self.runner.send_input(data)
        finally:
            self.runner.console.remove_listener(send)

    def close(self) -> None:
        self._listener.close()
