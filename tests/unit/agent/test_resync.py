"""The agent client stays in step with the agent across timeouts, late replies and guest restarts.

The stand-in below behaves as the stock qemu-ga does on the wire: it reads nothing until it has
"started" (bytes sent before that wait in the channel, as they do in virtio-serial), answers the
0xFF a client sends before each sync with a "stray '\\xff'" error, prefixes sync replies with 0xFF,
and answers every other command in order, without ids.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from virtkit.agent.client import AgentClient
from virtkit.errors import AgentError

STRAY_FF = {"error": {"class": "GenericError", "desc": "JSON parse error, stray '\\xff'"}}


class QgaLike:
    def __init__(self, path: Path) -> None:
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(str(path))
        self.srv.listen(4)
        self.started = threading.Event()
        self.delay: dict[str, float] = {}
        self.generation = 0  # bumped by restart(): replies to older requests are lost, as in a reboot
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def restart(self) -> None:
        self.generation += 1

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _reply(self, conn: socket.socket, data: bytes, gen: int) -> None:
        if gen == self.generation:
            with contextlib.suppress(OSError):
                conn.sendall(data)

    def _serve(self, conn: socket.socket) -> None:
        self.started.wait()
        buf = b""
        dec = json.JSONDecoder()
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            while buf:
                buf = buf.lstrip(b" \n")
                if buf[:1] == b"\xff":
                    buf = buf[1:]
                    conn.sendall(json.dumps(STRAY_FF).encode() + b"\n")
                    continue
                try:
                    msg, end = dec.raw_decode(buf.decode())
                except (json.JSONDecodeError, UnicodeDecodeError):
                    break
                buf = buf.decode()[end:].encode()
                self._answer(conn, msg)

    def _answer(self, conn: socket.socket, msg: dict[str, Any]) -> None:
        cmd, gen = msg["execute"], self.generation
        time.sleep(self.delay.get(cmd, 0))
        if cmd == "guest-sync-delimited":
            self._reply(conn, b"\xff" + json.dumps({"return": msg["arguments"]["id"]}).encode() + b"\n", gen)
        elif cmd == "guest-info":
            self._reply(conn, json.dumps({"return": {"version": "8.0", "gen": gen}}).encode() + b"\n", gen)
        elif cmd == "echo":
            self._reply(conn, json.dumps({"return": msg["arguments"]["v"]}).encode() + b"\n", gen)

    def close(self) -> None:
        self.started.set()
        self.srv.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def qga(tmp_path: Path) -> Iterator[Callable[[], tuple[QgaLike, AgentClient]]]:
    made: list[tuple[QgaLike, AgentClient]] = []

    def make() -> tuple[QgaLike, AgentClient]:
        path = tmp_path / f"qga{len(made)}.sock"
        pair = (QgaLike(path), AgentClient(path, timeout=5))
        made.append(pair)
        return pair

    yield make
    for fake, client in made:
        client.close()
        fake.close()


def test_first_call_after_a_sync_timeout_gets_its_own_reply(qga: Callable[[], tuple[QgaLike, AgentClient]]) -> None:
    """`start; exec` while the agent boots, then `exec` once it is up: the queued 0xFF, its stray-byte
    error and the old sync's reply must not be taken as the answer (the `stray '\\xff'` report)."""
    fake, client = qga()
    with pytest.raises(AgentError, match="did not answer"):
        client.call("guest-info", timeout=1)  # its sync times out: the agent is not reading yet
    assert not client.in_step
    fake.started.set()
    time.sleep(0.2)  # the stale error and the stale sync reply are now on the stream
    assert client.call("echo", {"v": "first"}) == "first"
    assert client.call("echo", {"v": "second"}) == "second"


def test_late_reply_after_a_call_timeout_is_never_the_next_answer(
    qga: Callable[[], tuple[QgaLike, AgentClient]],
) -> None:
    fake, client = qga()
    fake.started.set()
    fake.delay["guest-info"] = 0.6
    with pytest.raises(AgentError, match="did not answer guest-info"):
        client.call("guest-info", timeout=0.2)
    assert not client.in_step
    time.sleep(0.6)  # the late guest-info reply arrives
    assert client.call("echo", {"v": 7}) == 7
    assert client.in_step


def test_interrupt_ends_the_waiting_call_with_the_reason(qga: Callable[[], tuple[QgaLike, AgentClient]]) -> None:
    fake, client = qga()
    fake.started.set()
    client.sync()
    fake.delay["guest-info"] = 1.0
    fake.restart()  # the guest reboots under the call: its reply never comes
    threading.Timer(0.3, client.interrupt, args=("the guest restarted during the call",)).start()
    t0 = time.monotonic()
    with pytest.raises(AgentError, match="restarted during the call"):
        client.call("guest-info", timeout=5)
    assert time.monotonic() - t0 < 1.0
    fake.delay.clear()
    assert client.call("echo", {"v": "after"}) == "after"


def test_interrupt_between_calls_only_forces_a_resync(qga: Callable[[], tuple[QgaLike, AgentClient]]) -> None:
    fake, client = qga()
    fake.started.set()
    assert client.call("echo", {"v": 1}) == 1
    client.interrupt("the guest restarted")
    assert not client.in_step
    assert client.call("echo", {"v": 2}) == 2  # no stale reason raised: nothing was waiting


def test_many_calls_with_random_timeouts_never_mix_replies(qga: Callable[[], tuple[QgaLike, AgentClient]]) -> None:
    """Every answer is either the caller's own value or a clear error; never another call's reply."""
    fake, client = qga()
    fake.started.set()
    answered = failed = 0
    for i in range(40):
        fake.delay["echo"] = 0.15 if i % 5 == 0 else 0.0
        try:
            assert client.call("echo", {"v": i}, timeout=0.1) == i
            answered += 1
        except AgentError as e:
            assert "did not answer" in str(e)
            failed += 1
    assert failed == 8 and answered == 32
