"""Every control socket virtkit serves: JSON lines over unix sockets, requests with ids, typed errors.

One object per line each way (``json.dumps`` escapes newlines, so a line is a message)::

    request   {"id": 7, "op": "pause", "args": {...}}
    reply     {"id": 7, "ok": true, "result": ...}
              {"id": 7, "ok": false, "error": {"type": "ConfigError", "message": "...", "hint": "...", "data": {}}}
    event     {"id": 7, "event": {...}}       after the reply, for a request the server keeps open (a watch)

Errors cross the socket as the project's own classes (:mod:`virtkit.errors`) with their fix hint, looked up
in an explicit registry (:func:`register_error`); an unknown type arrives as an :class:`EngineError`.
Lines are bounded (:data:`MAX_REQUEST` for what a server reads, :data:`MAX_REPLY` for what a client reads):
an oversize one is refused, never buffered without end. Every client call has a deadline.

Users: the native VMM's control socket (:mod:`virtkit.machine.control`), each VM's supervisor
(:mod:`virtkit.daemon.vmproc`), and their clients (:mod:`virtkit.engines.native`, :mod:`virtkit.daemon.ctl`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from virtkit import errors
from virtkit.errors import EngineError, IpcError, IpcTimeout, PeerGone, VirtkitError

log = logging.getLogger(__name__)

MAX_REQUEST = 1 << 20  # a request names an op and a few arguments
MAX_REPLY = 64 << 20  # a reply may carry a command's captured output
_CHUNK = 65536

# -- typed errors ------------------------------------------------------------------------------------------

_ERRORS: dict[str, type[VirtkitError]] = {}


def register_error(cls: type[VirtkitError]) -> type[VirtkitError]:
    """Let ``cls`` cross a control socket as itself (a class decorator, too). Its constructor must take
    ``(message, hint=...)``; other plain attributes travel in ``data``."""
    _ERRORS[cls.__name__] = cls
    return cls


for _cls in (
    errors.VirtkitError,
    errors.ConfigError,
    errors.HostError,
    errors.ImageError,
    errors.EngineError,
    errors.GuestTimeout,
    errors.Unsupported,
    errors.AgentError,
    errors.IpcError,
    errors.PeerGone,
    errors.IpcTimeout,
):
    register_error(_cls)


def encode_error(exc: BaseException) -> dict[str, Any]:
    """The wire form of ``exc``; anything that is not a :class:`VirtkitError` becomes an EngineError."""
    if not isinstance(exc, VirtkitError):
        return {"type": "EngineError", "message": f"{type(exc).__name__}: {exc}", "hint": None, "data": {}}
    data = {
        k: v
        for k, v in vars(exc).items()
        if k not in ("message", "hint") and not k.startswith("_") and isinstance(v, str | int | float | bool)
    }
    name = type(exc).__name__
    return {"type": name if _ERRORS.get(name) is type(exc) else "EngineError", "message": exc.message,
            "hint": exc.hint, "data": data}  # fmt: skip


def decode_error(wire: Any) -> VirtkitError:
    """The exception ``wire`` (from :func:`encode_error`) stands for."""
    if not isinstance(wire, dict):
        return IpcError(f"malformed error from the peer: {wire!r}")
    cls = _ERRORS.get(str(wire.get("type")), EngineError)
    hint = wire.get("hint")
    exc = cls(str(wire.get("message", "unknown error")), hint=hint if isinstance(hint, str) else None)
    data = wire.get("data")
    if isinstance(data, dict):
        for k, v in data.items():  # only attributes the class itself has (GuestTimeout's console_tail)
            if isinstance(k, str) and k in vars(exc) and k not in ("message", "hint"):
                setattr(exc, k, v)
    return exc


# -- framing ------------------------------------------------------------------------------------------------


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def reply(request_id: Any, result: Any = None, error: BaseException | None = None) -> dict[str, Any]:
    if error is not None:
        return {"id": request_id, "ok": False, "error": encode_error(error)}
    return {"id": request_id, "ok": True, "result": result}


def result_of(message: dict[str, Any]) -> Any:
    """A reply's result, or its error raised."""
    if message.get("ok") is True:
        return message.get("result")
    raise decode_error(message.get("error"))


class Oversize(IpcError):
    """A line longer than the reader's limit."""


class LineReader:
    """Reads newline-terminated messages from a socket, at most ``limit`` bytes each, against deadlines."""

    def __init__(self, sock: socket.socket, limit: int) -> None:
        self._sock = sock
        self._limit = limit
        self._buf = bytearray()

    def read(self, deadline: float | None = None) -> bytes | None:
        """The next line without its newline; None at a clean end of stream. Raises :class:`Oversize`,
        :class:`PeerGone` (the peer closed in the middle of a line) or :class:`TimeoutError`."""
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                if end > self._limit:
                    raise Oversize(f"a line of more than {self._limit} bytes")
                line = bytes(self._buf[:end])
                del self._buf[: end + 1]
                return line
            if len(self._buf) > self._limit:
                raise Oversize(f"a line of more than {self._limit} bytes")
            if deadline is None:
                self._sock.settimeout(None)
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self._sock.settimeout(left)
            chunk = self._sock.recv(_CHUNK)
            if not chunk:
                if self._buf:
                    raise PeerGone(f"the peer closed the connection in the middle of a message ({len(self._buf)} bytes)")
                return None
            self._buf += chunk


def _decode(line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except ValueError as e:
        raise IpcError(f"not a JSON line: {line[:80]!r}") from e
    if not isinstance(message, dict):
        raise IpcError(f"expected a JSON object, got {line[:80]!r}")
    return message


# -- server -------------------------------------------------------------------------------------------------


def listen_unix(path: Path, backlog: int) -> socket.socket:
    """A listening unix socket at ``path`` (a stale one there is replaced), readable by its owner only."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


class Listener:
    """A unix socket (mode 0600) whose connections are each served by ``serve`` on a thread of their own."""

    def __init__(self, path: Path, serve: Callable[[socket.socket], None], backlog: int = 64) -> None:
        self.path = path
        self._serve = serve
        self._sock = listen_unix(path, backlog)
        self._inode = path.stat().st_ino
        self._closed = False
        threading.Thread(target=self._accept, name=f"accept {path.name}", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve_one, args=(conn,), name=f"serve {self.path.name}", daemon=True).start()

    def _serve_one(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            self._serve(conn)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            if self.path.stat().st_ino == self._inode:  # not a successor's socket bound at the same path
                self.path.unlink()


class Peer:
    """The server's side of one connection: replies and events go out whole, one writer at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = threading.Lock()
        self.closed = False

    def send(self, message: dict[str, Any]) -> None:
        data = encode(message)
        with self._lock:
            self._sock.sendall(data)

    def close(self) -> None:
        """End the connection (the client's read sees end-of-file); safe from any thread."""
        self.closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)


@dataclass(frozen=True)
class Request:
    id: Any
    op: str
    args: dict[str, Any]
    peer: Peer
    _after_reply: list[Callable[[], None]] = field(default_factory=list)

    def event(self, payload: dict[str, Any]) -> None:
        """Send an event on this request's connection (for requests kept open, after their reply)."""
        self.peer.send({"id": self.id, "event": payload})

    def after_reply(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once the reply has gone out (or failed to): a handler that holds back events until
        its reply is on the wire releases them here."""
        self._after_reply.append(fn)


Handler = Callable[[Request], Any]


class Server:
    """Answers JSON-lines requests on ``path``: ``handle(request)`` returns the result or raises. Requests on
    one connection are answered in order; connections run in parallel. A handler's unexpected exception is
    logged and answered as an EngineError: a bad request never takes the server down."""

    def __init__(self, path: Path, handle: Handler, max_request: int = MAX_REQUEST) -> None:
        self._handle = handle
        self._max = max_request
        self._listener = Listener(path, self._serve)
        self.path = path

    def _serve(self, conn: socket.socket) -> None:
        peer = Peer(conn)
        reader = LineReader(conn, self._max)
        while True:
            try:
                line = reader.read()
            except Oversize as e:
                refusal = errors.ConfigError(f"request refused: {e.message}", hint=f"send at most {self._max} bytes a line")
                peer.send(reply(None, error=refusal))
                _linger(conn)
                return
            except PeerGone:
                return
            if line is None:
                return
            request, answer = self._answer(line, peer)
            try:
                peer.send(answer)
            finally:
                for fn in request._after_reply if request is not None else ():
                    fn()

    def _answer(self, line: bytes, peer: Peer) -> tuple[Request | None, dict[str, Any]]:
        try:
            message = _decode(line)
        except IpcError as e:
            return None, reply(None, error=errors.ConfigError(e.message, hint="send one JSON object a line"))
        request_id = message.get("id")
        op, args = message.get("op"), message.get("args", {})
        if not isinstance(op, str) or not isinstance(args, dict):
            bad = errors.ConfigError("a request needs a string 'op' and an object 'args'")
            return None, reply(request_id, error=bad)
        request = Request(request_id, op, args, peer)
        try:
            result = self._handle(request)
            encode(result)  # fail here, as an error reply, if the result is not JSON
            return request, reply(request_id, result)
        except VirtkitError as e:
            return request, reply(request_id, error=e)
        except Exception as e:
            log.exception("control request %r failed", op)
            return request, reply(request_id, error=e)

    def close(self) -> None:
        self._listener.close()


def _linger(conn: socket.socket, seconds: float = 1.0) -> None:
    """Close our side and read what the client is still sending for a moment, so that it reads our refusal
    instead of a reset connection."""
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            conn.settimeout(left)
            if not conn.recv(_CHUNK):
                return


# -- client -------------------------------------------------------------------------------------------------

_ids = itertools.count(1)


class Connection:
    """A client connection; :meth:`call` may be used many times, from one thread at a time."""

    def __init__(self, path: Path, timeout: float | None = 30.0, peer: str = "the peer", max_reply: int = MAX_REPLY):
        self.peer = peer
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(path))
        except OSError as e:
            self._sock.close()
            raise PeerGone(f"{peer} is not there ({path}: {e.strerror or e})") from e
        self._reader = LineReader(self._sock, max_reply)

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def send(self, op: str, args: dict[str, Any] | None = None) -> int:
        request_id = next(_ids)
        try:
            self._sock.sendall(encode({"id": request_id, "op": op, "args": args or {}}))
        except OSError as e:
            self.close()
            raise PeerGone(f"{self.peer} went away during {op!r}: {e}") from e
        return request_id

    def receive(self, op: str, deadline: float | None) -> dict[str, Any]:
        """The next message; closes the connection on any failure (its stream position is then unknown)."""
        try:
            line = self._reader.read(deadline)
            if line is None:
                raise PeerGone(f"{self.peer} closed the connection during {op!r}")
            return _decode(line)
        except TimeoutError as e:
            self.close()
            raise IpcTimeout(f"{self.peer} did not answer {op!r} in time") from e
        except IpcError as e:
            self.close()
            if isinstance(e, Oversize):
                raise IpcError(f"{self.peer} sent {e.message} in answer to {op!r}") from e
            raise
        except OSError as e:
            self.close()
            raise PeerGone(f"{self.peer} went away during {op!r}: {e}") from e

    def call(self, op: str, args: dict[str, Any] | None = None, timeout: float | None = 30.0) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        request_id = self.send(op, args)
        message = self.receive(op, deadline)
        if message.get("id") is None and message.get("ok") is False:  # refused before its id was read
            self.close()
            raise decode_error(message.get("error"))
        if message.get("id") != request_id:
            self.close()
            raise IpcError(f"{self.peer} answered request {message.get('id')!r}, not {request_id} ({op!r})")
        return result_of(message)

    def events(self, op: str) -> Iterator[dict[str, Any]]:
        """Event payloads after a kept-open request's reply, until the server ends the connection."""
        while True:
            try:
                message = self.receive(op, None)
            except PeerGone:
                return
            event = message.get("event")
            if isinstance(event, dict):
                yield event


def call(
    path: Path,
    op: str,
    args: dict[str, Any] | None = None,
    timeout: float | None = 30.0,
    peer: str = "the peer",
    max_reply: int = MAX_REPLY,
) -> Any:
    """One request on a connection of its own: the result, or the peer's error raised as its own class
    (:class:`PeerGone`, :class:`IpcTimeout` and :class:`IpcError` for the transport's own failures)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with Connection(path, timeout, peer, max_reply) as conn:
        left = None if deadline is None else max(0.001, deadline - time.monotonic())
        return conn.call(op, args, left)


def subscribe(
    path: Path, op: str, args: dict[str, Any] | None = None, timeout: float | None = 10.0, peer: str = "the peer"
) -> tuple[Any, Iterator[dict[str, Any]]]:
    """Send a request the server keeps open: its result, and the events that follow until it ends."""
    conn = Connection(path, timeout, peer)
    try:
        result = conn.call(op, args, timeout)
    except BaseException:
        conn.close()
        raise

    def events() -> Iterator[dict[str, Any]]:
        try:
            yield from conn.events(op)
        finally:
            conn.close()

    return result, events()
