"""A synchronous client for the QEMU guest agent protocol.

The agent speaks JSON objects over a byte stream (here the host end of the virtio-serial port
``org.qemu.guest_agent.0``, exposed by the engine as a unix socket). The stream can hold stale
replies from earlier clients or from commands queued before the agent started, so every session
starts with ``guest-sync-delimited``: the agent answers it with a 0xFF byte followed by the id we
sent, which tells us exactly where fresh replies begin. Works with the stock qemu-ga and any agent
that implements the same commands.

QGA replies carry no request id, so the client is only ever "in step" right after a successful sync.
Anything that may leave a reply in flight (a timeout, a lost connection, an interrupted call, the
guest restarting) marks the stream out of step, and the next call resynchronises first. The 0xFF we
send ahead of each sync makes the agent reset its parser, and it answers that byte with a "stray
'\\xff'" error: that reply, like every other stale one, comes before the agent's own 0xFF and is
discarded by the sync.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
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
        self._in_step = False  # True only between a successful sync and the next failure
        self._interrupted: str | None = None
        self._busy = 0  # calls in progress on this thread (sync runs inside call)
        self._guard = threading.Lock()  # interrupt() may come from another thread

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
            self._in_step = False
        return self._sock

    def close(self) -> None:
        with self._guard:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            self._buf = b""
            self._in_step = False

    @property
    def in_step(self) -> bool:
        """Whether the next reply on the stream is known to answer the next request."""
        return self._in_step

    def interrupt(self, reason: str) -> None:
        """Abort the call in progress (from any thread), e.g. because the guest restarted under it.

        The waiting call raises AgentError(reason); the connection is dropped, so the next call
        reconnects and resynchronises instead of taking the aborted call's late reply as its own.
        """
        with self._guard:
            self._in_step = False
            if self._sock is None:
                return
            if self._busy:
                self._interrupted = reason
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked recv
            else:
                self._sock.close()
                self._sock = None
                self._buf = b""

    @contextlib.contextmanager
    def _working(self) -> Iterator[None]:
        with self._guard:
            self._busy += 1
        try:
            yield
        finally:
            with self._guard:
                self._busy -= 1
                if not self._busy:
                    self._interrupted = None

    def _check_interrupted(self) -> None:
        with self._guard:
            reason, self._interrupted = self._interrupted, None
        if reason is not None:
            self.close()
            raise AgentError(reason, hint="run the command again once the guest agent is back")

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, obj: dict[str, Any], prefix: bytes = b"") -> None:
        self._check_interrupted()
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
            self._check_interrupted()
            return False
        except OSError as exc:
            self._check_interrupted()
            self.close()
            raise AgentError(f"lost the guest agent connection: {exc.strerror}") from exc
        self._check_interrupted()
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
        with self._working():
            self._sync(timeout)

    def _sync(self, timeout: float) -> None:
        self._in_step = False
        sync_id = random.randint(1, 2**31 - 1)
        self._send({"execute": "guest-sync-delimited", "arguments": {"id": sync_id}}, prefix=_SYNC_BYTE)
        deadline = time.monotonic() + timeout
        while True:
            # Discard everything before the agent's 0xFF delimiter: stale replies, the agent's error
            # for our own 0xFF, and garbage. Then skip sync replies meant for earlier ids.
            idx = self._buf.find(_SYNC_BYTE)
            if idx >= 0:
                self._buf = self._buf[idx + 1 :]
                obj = self._read_object(deadline)
                if obj is None:
                    break
                if obj.get("return") == sync_id:
                    self._in_step = True
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
        with self._working():
            return self._call(command, arguments, timeout)

    def _call(self, command: str, arguments: dict[str, Any] | None, timeout: float | None) -> Any:
        if not self._in_step:
            self._sync(2.0)
        msg: dict[str, Any] = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self._send(msg)
        deadline = time.monotonic() + (timeout or self.timeout)
        self._in_step = False  # until this call's reply is read, a late reply could be taken as the next one's
        obj = self._read_object(deadline)
        if obj is None:
            raise AgentError(f"the guest agent did not answer {command} in time")
        self._in_step = True
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
        with self._working():  # an interrupt between the polls ends the whole exec
            return self._exec(argv, args, timeout)

    def _exec(self, argv: Sequence[str], args: dict[str, Any], timeout: float | None) -> ExecResult:
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
        with self._working():
            self._file_write(path, data, mode)

    def _file_write(self, path: str, data: bytes, mode: str) -> None:
        handle = self.call("guest-file-open", {"path": path, "mode": mode})
        try:
            for off in range(0, len(data), _FILE_CHUNK) or [0]:
                chunk = data[off : off + _FILE_CHUNK]
                self.call("guest-file-write", {"handle": handle, "buf-b64": base64.b64encode(chunk).decode()})
        finally:
            self.call("guest-file-close", {"handle": handle})

    def file_read(self, path: str) -> bytes:
        with self._working():
            return self._file_read(path)

    def _file_read(self, path: str) -> bytes:
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
