"""The VMM process's control channel: a unix socket speaking JSON lines, and a console socket.

Control requests, one JSON object per line, each answered with one line::

    {"op": "status"}                -> {"ok": true, "state": "running", "boots": 1, ...}
    {"op": "pause"} / {"op": "resume"} / {"op": "stop"} / {"op": "reboot"}
    {"op": "powerdown"}             -> {"ok": true, "pressed": true}  (the ACPI power button)
    {"op": "input", "data": "text"} -> {"ok": true, "sent": 4}

The console socket streams what the guest writes to every client and feeds what clients send to the UART.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from pathlib import Path

from virtkit.machine.runner import Runner

MAX_LINE = 1 << 20


class UnixServer:
    def __init__(self, path: Path) -> None:
        self.path = path
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        os.chmod(path, 0o600)
        self._sock.listen(8)
        self._closed = False
        threading.Thread(target=self._accept, name=f"accept {path.name}", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve_safely, args=(conn,), daemon=True).start()

    def _serve_safely(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            self.serve(conn)

    def serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class ControlServer(UnixServer):
    def __init__(self, path: Path, runner: Runner) -> None:
        self.runner = runner
        super().__init__(path)

    def serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        for line in reader:
            if len(line) > MAX_LINE:
                break
            conn.sendall(json.dumps(self.handle(line)).encode() + b"\n")

    def handle(self, line: bytes) -> dict[str, object]:
        try:
            request = json.loads(line)
            op = request["op"]
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": "expected a JSON object with an 'op'"}
        runner = self.runner
        if op == "status":
            return {"ok": True, **runner.status()}
        if op == "pause":
            runner.pause()
        elif op == "resume":
            runner.resume()
        elif op == "stop":
            runner.stop()
        elif op == "reboot":
            runner.reboot()
        elif op == "powerdown":
            return {"ok": True, "pressed": runner.power_button()}
        elif op == "input":
            data = request.get("data")
            if not isinstance(data, str):
                return {"ok": False, "error": "'input' needs a string 'data'"}
            return {"ok": True, "sent": runner.send_input(data.encode())}
        else:
            return {"ok": False, "error": f"unknown op {op!r}"}
        return {"ok": True, "state": runner.state}


class ConsoleServer(UnixServer):
    def __init__(self, path: Path, runner: Runner) -> None:
        self.runner = runner
        super().__init__(path)

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
