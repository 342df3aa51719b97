"""The little HTTP/1.1 the client needs: one request per connection (``Connection: close``), over a unix socket
or TCP (TLS for https), bodies by Content-Length, chunked, or to the end of the stream.

Why not ``http.client`` or httpx: importing them costs 15 ms and 80 ms (``email`` parsing, ``ssl``), the better
part of a ``virtkit list`` process; this is what virsh's ~15 ms is measured against. Failures are ``OSError``
(``ConnectionError`` for a malformed answer, ``TimeoutError`` for a slow one), for the client to translate.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator

MAX_HEADER_LINE = 64 * 1024
MAX_HEADERS = 100


class Response:
    """A response whose head has been read; the body is read with :meth:`read` or :meth:`chunks`."""

    def __init__(self, sock: socket.socket, rfile: io.BufferedReader) -> None:
        self._sock, self._rfile = sock, rfile
        status = self._line().split(None, 2)
        if len(status) < 2 or not status[0].startswith(b"HTTP/1.") or not status[1].isdigit():
            raise ConnectionError(f"not an HTTP response: {b' '.join(status)[:80]!r}")
        self.status = int(status[1])
        self.reason = status[2].decode(errors="replace").strip() if len(status) > 2 else ""
        self.headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS):
            line = self._line()
            if not line.strip():
                break
            key, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ConnectionError(f"malformed HTTP header line {line[:80]!r}")
            self.headers[key.strip().lower()] = value.strip()
        else:
            raise ConnectionError("too many HTTP headers")

    def _line(self) -> bytes:
        line = self._rfile.readline(MAX_HEADER_LINE + 1)
        if not line:
            raise ConnectionError("the server closed the connection before answering")
        if len(line) > MAX_HEADER_LINE:
            raise ConnectionError("HTTP header line too long")
        return line

    def chunks(self) -> Iterator[bytes]:
        """The body as it arrives."""
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self._line().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self._line().strip():  # trailers
                        pass
                    return
                data = self._rfile.read(size)
                if len(data) < size:
                    raise ConnectionError("the server closed the connection in a chunk")
                self._line()  # the chunk's CRLF
                yield data
        elif "content-length" in self.headers:
            left = int(self.headers["content-length"])
            while left > 0:
                data = self._rfile.read(min(left, 65536))
                if not data:
                    raise ConnectionError("the server closed the connection in the body")
                left -= len(data)
                yield data
        else:
            while data := self._rfile.read(65536):
                yield data

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def lines(self) -> Iterator[bytes]:
        """The body line by line (server-sent events), without the line ends."""
        pending = b""
        for data in self.chunks():
            pending += data
            *done, pending = pending.split(b"\n")
            for line in done:
                yield line.rstrip(b"\r")
        if pending:
            yield pending

    def close(self) -> None:
        self._rfile.close()
        self._sock.close()


def connect_unix(path: str, timeout: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


def connect_tcp(host: str, port: int, tls: bool, timeout: float | None) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    if not tls:
        return sock
    import ssl

    return ssl.create_default_context().wrap_socket(sock, server_hostname=host)


def request(
    sock: socket.socket, method: str, target: str, host: str, headers: dict[str, str], body: bytes | None
) -> Response:
    """Send one request on a connected socket and read the response's head."""
    head = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        head.append(f"Content-Length: {len(body)}")
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b""))
    return Response(sock, sock.makefile("rb"))
