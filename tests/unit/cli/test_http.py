"""virtkit._http, the client's HTTP/1.1, against canned server answers on a socket pair."""

from __future__ import annotations

import socket
import threading

import pytest

from virtkit import _http


def _exchange(answer: bytes, body: bytes | None = None) -> tuple[_http.Response, bytes]:
    client, server = socket.socketpair()
    seen: list[bytes] = []

    def serve() -> None:
        seen.append(server.recv(65536))
        server.sendall(answer)
        server.close()

    t = threading.Thread(target=serve)
    t.start()
    resp = _http.request(client, "POST", "/v1/x?a=1", "virtkitd", {"Accept": "application/json"}, body)
    t.join()
    return resp, seen[0]


def test_request_and_content_length_body() -> None:
    resp, sent = _exchange(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-Console-Offset: 7\r\n\r\n{}", b'{"a":1}')
    assert sent.startswith(b"POST /v1/x?a=1 HTTP/1.1\r\nHost: virtkitd\r\nConnection: close\r\n")
    assert sent.endswith(b"Content-Length: 7\r\n\r\n" + b'{"a":1}')
    assert (resp.status, resp.reason, resp.headers["x-console-offset"]) == (201, "Created", "7")
    assert resp.read() == b"{}"
    resp.close()


def test_chunked_body_as_server_sent_event_lines() -> None:
    chunks = b"7\r\ndata: 1\r\n9\r\n\ndata: 2\n\r\n1;ext=x\r\n\n\r\n0\r\nTrailer: y\r\n\r\n"
    resp, _ = _exchange(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
    assert list(resp.lines()) == [b"data: 1", b"data: 2", b""]  # "data: 1" + "\ndata: 2\n" + "\n"


def test_body_to_the_end_of_the_stream_and_no_reason() -> None:
    resp, _ = _exchange(b"HTTP/1.1 204\r\n\r\n")
    assert resp.status == 204 and resp.reason == "" and resp.read() == b""


@pytest.mark.parametrize(
    ("answer", "needle"),
    [
        (b"", "closed the connection before answering"),
        (b"SSH-2.0-OpenSSH\r\n", "not an HTTP response"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed HTTP header"),
    ],
)
def test_a_broken_answer_is_a_connection_error(answer: bytes, needle: str) -> None:
    with pytest.raises(ConnectionError, match=needle):
        _exchange(answer)


def test_a_short_body_is_a_connection_error() -> None:
    resp, _ = _exchange(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(ConnectionError, match="in the body"):
        resp.read()
