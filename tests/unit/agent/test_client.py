"""The agent client against a scripted agent on a unix socket (no guest needed)."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from virtkit.agent.client import AgentClient
from virtkit.errors import AgentError

Handler = Callable[[dict[str, Any]], dict[str, Any] | None]


class FakeAgent:
    """Speaks the QGA wire protocol: 0xFF-delimited sync replies, one JSON object per reply."""

    def __init__(self, path: Path, handler: Handler, garbage: bytes = b"") -> None:
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(str(path))
        self.srv.listen(1)
        self.handler = handler
        self.garbage = garbage
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.srv.accept()
        conn.sendall(self.garbage)  # stale replies from an earlier session
        buf = b""
        dec = json.JSONDecoder()
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
            while True:
                text = buf.lstrip(b"\xff \n").decode()
                if not text:
                    buf = b""
                    break
                try:
                    msg, end = dec.raw_decode(text)
                except json.JSONDecodeError:
                    break
                buf = text[end:].encode()
                self.seen.append(msg["execute"])
                if msg["execute"] == "guest-sync-delimited":
                    conn.sendall(b"\xff" + json.dumps({"return": msg["arguments"]["id"]}).encode() + b"\n")
                    continue
                reply = self.handler(msg)
                if reply is not None:
                    conn.sendall(json.dumps(reply).encode() + b"\n")

    def close(self) -> None:
        self.srv.close()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Callable[..., AgentClient]]:
    made: list[tuple[FakeAgent, AgentClient]] = []

    def make(handler: Handler, garbage: bytes = b"") -> AgentClient:
        path = tmp_path / f"qga{len(made)}.sock"
        fake = FakeAgent(path, handler, garbage)
        client = AgentClient(path, timeout=5)
        made.append((fake, client))
        return client

    yield make
    for fake, client in made:
        client.close()
        fake.close()


def test_sync_skips_stale_replies_and_garbage(agent: Callable[..., AgentClient]) -> None:
    client = agent(lambda m: {"return": {}}, garbage=b'{"return": 1234}\n\x00junk{"ret')
    client.wait_ready(5)
    client.ping()


def test_exec_decodes_output_and_exit_code(agent: Callable[..., AgentClient]) -> None:
    polls = {"n": 0}

    def handler(msg: dict[str, Any]) -> dict[str, Any]:
        if msg["execute"] == "guest-exec":
            assert msg["arguments"]["path"] == "sh"
            assert msg["arguments"]["arg"] == ["-c", "exit 3"]
            return {"return": {"pid": 42}}
        polls["n"] += 1
        if polls["n"] < 3:
            return {"return": {"exited": False}}
        out = base64.b64encode(b"hello\n").decode()
        err = base64.b64encode(b"oops\n").decode()
        return {"return": {"exited": True, "exitcode": 3, "out-data": out, "err-data": err}}

    r = agent(handler).exec(["sh", "-c", "exit 3"])
    assert (r.exitcode, r.stdout, r.stderr, r.ok) == (3, b"hello\n", b"oops\n", False)
    assert polls["n"] == 3


def test_agent_error_is_raised_with_description(agent: Callable[..., AgentClient]) -> None:
    client = agent(lambda m: {"error": {"class": "GenericError", "desc": "No such file"}})
    with pytest.raises(AgentError, match="No such file"):
        client.file_read("/nope")


def test_file_roundtrip_in_chunks(agent: Callable[..., AgentClient]) -> None:
    store: dict[int, bytearray] = {}
    cursor: dict[int, int] = {}

    def handler(msg: dict[str, Any]) -> dict[str, Any]:
        cmd, args = msg["execute"], msg.get("arguments", {})
        if cmd == "guest-file-open":
            store.setdefault(7, bytearray())
            cursor[7] = 0
            return {"return": 7}
        if cmd == "guest-file-write":
            data = base64.b64decode(args["buf-b64"])
            store[7] += data
            return {"return": {"count": len(data), "eof": False}}
        if cmd == "guest-file-read":
            pos = cursor[7]
            chunk = bytes(store[7][pos : pos + args["count"]])
            cursor[7] = pos + len(chunk)
            return {"return": {"count": len(chunk), "buf-b64": base64.b64encode(chunk).decode(), "eof": not chunk}}
        return {"return": {}}

    client = agent(handler)
    payload = bytes(range(256)) * 600  # 150 KiB: several chunks each way
    client.file_write("/tmp/x", payload)
    assert client.file_read("/tmp/x") == payload


def test_no_answer_times_out_with_clear_error(agent: Callable[..., AgentClient]) -> None:
    client = agent(lambda m: None)
    client.wait_ready(5)
    with pytest.raises(AgentError, match="did not answer guest-info"):
        client.call("guest-info", timeout=0.3)


def test_unreachable_socket(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="cannot reach"):
        AgentClient(tmp_path / "none.sock").ping()
