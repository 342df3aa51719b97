"""The control-socket protocol every virtkit server and client speaks: framing, ids, limits, timeouts, errors."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from virtkit import ipc
from virtkit.errors import (
    AgentError,
    ConfigError,
    EngineError,
    GuestTimeout,
    IpcError,
    IpcTimeout,
    PeerGone,
    Unsupported,
    VirtkitError,
)


def handler(request: ipc.Request) -> object:
    match request.op:
        case "echo":
            return request.args
        case "sleep":
            time.sleep(float(request.args["s"]))
            return "late"
        case "config":
            raise ConfigError("bad field 'x'", hint="give x as a number")
        case "timeout":
            raise GuestTimeout("vm1 did not become ready", console_tail="last line", hint="read the console")
        case "bug":
            raise KeyError("oops")
        case "not-json":
            return {1, 2}
        case "big":
            return "x" * int(request.args["n"])
        case "watch":
            request.after_reply(lambda: [request.event({"n": i}) for i in range(3)] and request.peer.close())
            return "watching"
    raise ConfigError(f"unknown op {request.op!r}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ipc.Server]:
    s = ipc.Server(tmp_path / "ctl.sock", handler, max_request=4096)
    yield s
    s.close()


def test_request_and_reply_round_trip(server: ipc.Server) -> None:
    assert ipc.call(server.path, "echo", {"a": [1, "two", None]}) == {"a": [1, "two", None]}
    with ipc.Connection(server.path) as conn:  # many requests on one connection, each with its own id
        assert [conn.call("echo", {"i": i}) for i in range(3)] == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_the_socket_is_private_and_closing_removes_it(tmp_path: Path) -> None:
    s = ipc.Server(tmp_path / "c.sock", handler)
    assert (s.path.stat().st_mode & 0o777) == 0o600
    s.close()
    assert not s.path.exists()


def test_a_successors_socket_at_the_same_path_survives_the_old_servers_close(tmp_path: Path) -> None:
    old = ipc.Server(tmp_path / "c.sock", handler)
    new = ipc.Server(tmp_path / "c.sock", handler)  # a restarted supervisor binds the path again
    old.close()
    assert ipc.call(new.path, "echo", {"still": True}) == {"still": True}
    new.close()


def test_typed_errors_cross_with_their_hint(server: ipc.Server) -> None:
    with pytest.raises(ConfigError, match="bad field 'x'") as e:
        ipc.call(server.path, "config")
    assert e.value.hint == "give x as a number"
    with pytest.raises(GuestTimeout) as t:
        ipc.call(server.path, "timeout")
    assert (t.value.console_tail, t.value.hint) == ("last line", "read the console")


def test_a_handlers_bug_is_an_engine_error_and_the_server_lives_on(server: ipc.Server) -> None:
    with pytest.raises(EngineError, match="KeyError: 'oops'"):
        ipc.call(server.path, "bug")
    with pytest.raises(EngineError, match="TypeError"):
        ipc.call(server.path, "not-json")
    assert ipc.call(server.path, "echo", {"ok": 1}) == {"ok": 1}


@pytest.mark.parametrize(
    "exc", [ConfigError("c", hint="h"), Unsupported("u", hint="h2"), AgentError("a"), PeerGone("p"), IpcTimeout("t")]
)
def test_every_registered_error_round_trips_as_its_own_class(exc: VirtkitError) -> None:
    back = ipc.decode_error(json.loads(json.dumps(ipc.encode_error(exc))))
    assert type(back) is type(exc) and (back.message, back.hint) == (exc.message, exc.hint)


def test_unknown_and_unregistered_errors_arrive_as_engine_errors() -> None:
    class Private(ConfigError):
        pass

    wire = ipc.encode_error(Private("secret", hint="h"))
    assert wire["type"] == "EngineError"
    assert type(ipc.decode_error({"type": "SystemExit", "message": "m"})) is EngineError
    assert type(ipc.decode_error("garbage")) is IpcError
    # a name is only looked up in the registry: nothing else is ever instantiated from the wire
    assert type(ipc.decode_error({"type": "__class__", "message": "m"})) is EngineError


def test_registering_a_class_lets_it_cross() -> None:
    class Conflict(VirtkitError):
        pass

    ipc.register_error(Conflict)
    assert type(ipc.decode_error(ipc.encode_error(Conflict("taken")))) is Conflict


def test_an_oversize_request_is_refused_cleanly(server: ipc.Server) -> None:
    with pytest.raises(ConfigError, match="more than 4096 bytes") as e:
        ipc.call(server.path, "echo", {"blob": "x" * 100_000})
    assert e.value.hint
    assert ipc.call(server.path, "echo", {"small": 1}) == {"small": 1}  # the server still answers others


def test_an_oversize_reply_is_refused_by_the_client(server: ipc.Server) -> None:
    with pytest.raises(IpcError, match="more than 1000 bytes"):
        ipc.call(server.path, "big", {"n": 5000}, max_reply=1000)
    assert ipc.call(server.path, "big", {"n": 500}, max_reply=1000) == "x" * 500


def test_a_slow_answer_times_out(server: ipc.Server) -> None:
    t0 = time.monotonic()
    with pytest.raises(IpcTimeout, match="did not answer 'sleep'"):
        ipc.call(server.path, "sleep", {"s": 2}, timeout=0.2, peer="the test peer")
    assert time.monotonic() - t0 < 1.5


def test_no_server_is_peer_gone(tmp_path: Path) -> None:
    with pytest.raises(PeerGone, match="the VMM is not there"):
        ipc.call(tmp_path / "nobody.sock", "status", peer="the VMM")


def raw_server(path: Path, answer: bytes) -> threading.Thread:
    """A server that reads one line and answers ``answer`` verbatim, then closes."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(1)

    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.makefile("rb").readline()
            conn.sendall(answer)
        listener.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_peer_closing_mid_message(tmp_path: Path) -> None:
    raw_server(tmp_path / "s", b'{"id": 1, "ok": tr')
    with pytest.raises(PeerGone, match="middle of a message"):
        ipc.call(tmp_path / "s", "status")


def test_peer_closing_without_an_answer(tmp_path: Path) -> None:
    raw_server(tmp_path / "s", b"")
    with pytest.raises(PeerGone, match="closed the connection during 'status'"):
        ipc.call(tmp_path / "s", "status")


def test_a_reply_to_another_request_or_not_json_is_a_protocol_error(tmp_path: Path) -> None:
    raw_server(tmp_path / "a", b'{"id": 999999, "ok": true, "result": 1}\n')
    with pytest.raises(IpcError, match="answered request 999999"):
        ipc.call(tmp_path / "a", "status")
    raw_server(tmp_path / "b", b"hello\n")
    with pytest.raises(IpcError, match="not a JSON line"):
        ipc.call(tmp_path / "b", "status")


def test_malformed_requests_get_an_error_reply(server: ipc.Server) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(server.path))
        f = s.makefile("rb")
        s.sendall(b"not json\n")
        bad = json.loads(f.readline())
        s.sendall(b'{"id": 5, "op": 7}\n')
        no_op = json.loads(f.readline())
    assert bad["ok"] is False and bad["error"]["type"] == "ConfigError"
    assert no_op["id"] == 5 and "string 'op'" in no_op["error"]["message"]


def test_events_follow_the_reply_of_a_kept_open_request(server: ipc.Server) -> None:
    result, events = ipc.subscribe(server.path, "watch")
    assert result == "watching"
    assert list(events) == [{"n": 0}, {"n": 1}, {"n": 2}]  # ends when the server closes the connection


def test_framing_survives_newlines_and_split_writes(tmp_path: Path) -> None:
    a, b = socket.socketpair()
    reader = ipc.LineReader(b, limit=1024)
    for piece in (b'{"id": 1, "text": "a\\nb"}', b"\n", b'{"id"', b": 2}\n"):
        a.sendall(piece)
    assert json.loads(reader.read(time.monotonic() + 1) or b"") == {"id": 1, "text": "a\nb"}
    assert json.loads(reader.read(time.monotonic() + 1) or b"") == {"id": 2}
    a.close()
    assert reader.read(time.monotonic() + 1) is None
