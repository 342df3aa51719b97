"""A synchronous client for the QEMU guest agent protocol.

The agent speaks JSON objects over a byte stream (here the host end of the virtio-serial port
``org.qemu.guest_agent.0``, exposed by the engine as a unix socket). The stream can hold stale
replies from earlier clients or from commands queued before the agent started, so every session
starts with ``guest-sync-delimited``: the agent answers it with a 0xFF byte followed by the id we
sent, which tells us exactly where fresh replies begin. Works with the stock qemu-ga and any agent
that implements the same commands.
"""

from __future__ import annotations

import base64
import json
import random
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from virtkit.errors import AgentError

_SYNC_BYTE = b"\xff"
_READ_CHUNK = 65536
_FILE_CHUNK = 48 * 1024  # qemu-ga caps a single read; stay well under its limit


@dataclass(frozen=True)
class ExecResult:
    exitcode: int
    stdout: bytes
    stderr: bytes
    signal: int | None = None

    @property
    def ok(self) -> bool:
        return self.exitcode == 0 and self.signal is None


class AgentClient:
    def __init__(self, path: Path | str, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""

    # -- connection ----------------------------------------------------------------------------
    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(self.path))
            except OSError as exc:
                sock.close()
                raise AgentError(
                    f"cannot reach the guest agent socket {self.path}: {exc.strerror}",
                    hint="is the machine running with its agent channel?",
                ) from exc
            self._sock = sock
            self._buf = b""
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._buf = b""

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, obj: dict[str, Any], prefix: bytes = b"") -> None:
        sock = self._connect()
        try:
            sock.sendall(prefix + json.dumps(obj).encode() + b"\n")
        except OSError as exc:
            self.close()
            raise AgentError(f"lost the guest agent connection: {exc.strerror}") from exc

    def _fill(self, deadline: float) -> bool:
        """Read more bytes into the buffer; False when the deadline passed with nothing new."""
        sock = self._connect()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(_READ_CHUNK)
        except TimeoutError:
            return False
        except OSError as exc:
            self.close()
            raise AgentError(f"lost the guest agent connection: {exc.strerror}") from exc
        if not chunk:
            self.close()
            raise AgentError("the guest agent channel closed", hint="the guest may have shut down")
        self._buf += chunk
        return True

    def _read_object(self, deadline: float) -> dict[str, Any] | None:
        """Next complete JSON object from the stream, or None at the deadline."""
        decoder = json.JSONDecoder()
        while True:
            text = self._buf.lstrip(b" \r\n\t" + _SYNC_BYTE)
            if text:
                try:
                    obj, end = decoder.raw_decode(text.decode("utf-8", "replace"))
                except json.JSONDecodeError:
                    pass
                else:
                    self._buf = text.decode("utf-8", "replace")[end:].encode()
                    if isinstance(obj, dict):
                        return obj
                    continue
            if not self._fill(deadline):
                return None

    # -- protocol ------------------------------------------------------------------------------
    def sync(self, timeout: float = 2.0) -> None:
        """Resynchronise the stream; raises AgentError if the agent does not answer in time."""
        sync_id = random.randint(1, 2**31 - 1)
        self._send({"execute": "guest-sync-delimited", "arguments": {"id": sync_id}}, prefix=_SYNC_BYTE)
        deadline = time.monotonic() + timeout
        while True:
            # Discard everything before the agent's 0xFF delimiter: stale replies and garbage.
            idx = self._buf.find(_SYNC_BYTE)
            if idx >= 0:
                self._buf = self._buf[idx + 1 :]
                obj = self._read_object(deadline)
                if obj is None:
                    break
                if obj.get("return") == sync_id:
                    return
                continue
            self._buf = b""
            if not self._fill(deadline):
                break
        raise AgentError(f"the guest agent did not answer within {timeout:g}s")

    def wait_ready(
        self,
        timeout: float,
        alive: Callable[[], bool] | None = None,
        poll: float = 1.0,
    ) -> float:
        """Block until the agent answers; returns seconds waited. ``alive`` stops early if the VM died."""
        start = time.monotonic()
        deadline = start + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if alive is not None and not alive():
                raise AgentError("the machine stopped before its guest agent became ready")
            try:
                self.sync(timeout=min(poll, max(0.05, deadline - time.monotonic())))
                return time.monotonic() - start
            except AgentError as exc:
                last = exc
                if self._sock is None:  # not connectable yet: don't spin
                    time.sleep(0.1)
        raise AgentError(f"the guest agent was not ready after {timeout:g}s ({last})")

    def call(self, command: str, arguments: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        if self._sock is None:
            self.sync()
        msg: dict[str, Any] = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self._send(msg)
        deadline = time.monotonic() + (timeout or self.timeout)
        obj = self._read_object(deadline)
        if obj is None:
            self.close()  # the reply may still come; never mistake it for the next one
            raise AgentError(f"the guest agent did not answer {command} in time")
        if "error" in obj:
            err = obj["error"]
            raise AgentError(f"{command}: {err.get('desc', err)} ({err.get('class', 'error')})")
        return obj.get("return")

    # -- commands ------------------------------------------------------------------------------
    def ping(self) -> None:
        self.call("guest-ping")

    def info(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("guest-info")
        return result

    def exec(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        env: Sequence[str] = (),
        timeout: float | None = 60.0,
    ) -> ExecResult:
        """Run argv in the guest, wait for it, return exit code and captured output."""
        if not argv:
            raise AgentError("nothing to run", hint="give a command, e.g. -- uname -a")
        args: dict[str, Any] = {"path": argv[0], "arg": list(argv[1:]), "capture-output": True}
        if env:
            args["env"] = list(env)
        if input is not None:
            args["input-data"] = base64.b64encode(input).decode()
        pid = self.call("guest-exec", args)["pid"]
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.02
        while True:
            st = self.call("guest-exec-status", {"pid": pid})
            if st.get("exited"):
                return ExecResult(
                    exitcode=int(st.get("exitcode", 128 + int(st.get("signal", 0)))),
                    stdout=base64.b64decode(st.get("out-data", "")),
                    stderr=base64.b64decode(st.get("err-data", "")),
                    signal=st.get("signal"),
                )
            if deadline is not None and time.monotonic() > deadline:
                raise AgentError(f"{argv[0]} did not finish within {timeout:g}s in the guest")
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def file_write(self, path: str, data: bytes, mode: str = "w") -> None:
        handle = self.call("guest-file-open", {"path": path, "mode": mode})
        try:
            for off in range(0, len(data), _FILE_CHUNK) or [0]:
                chunk = data[off : off + _FILE_CHUNK]
                self.call("guest-file-write", {"handle": handle, "buf-b64": base64.b64encode(chunk).decode()})
        finally:
            self.call("guest-file-close", {"handle": handle})

    def file_read(self, path: str) -> bytes:
        handle = self.call("guest-file-open", {"path": path, "mode": "r"})
        out = bytearray()
        try:
            while True:
                r = self.call("guest-file-read", {"handle": handle, "count": _FILE_CHUNK})
                out += base64.b64decode(r.get("buf-b64", ""))
                if r.get("eof") or not r.get("count"):
                    break
        finally:
            self.call("guest-file-close", {"handle": handle})
        return bytes(out)

    def network_interfaces(self, timeout: float | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.call("guest-network-get-interfaces", timeout=timeout)
        return result

    def shutdown(self, mode: str = "powerdown") -> None:
        """Ask the guest to power down, halt or reboot. The agent sends no reply on success."""
        self._send({"execute": "guest-shutdown", "arguments": {"mode": mode}})
