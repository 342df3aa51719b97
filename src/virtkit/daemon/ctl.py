"""The client of each VM's supervisor (:mod:`virtkit.daemon.vmproc`), over :mod:`virtkit.ipc`.

A unix socket in the VM's directory. ``call`` sends one request and returns its result or raises the
supervisor's error as its own class; ``watch`` keeps a connection open and yields ``{"event": ...}``
dicts until the VM ends: its end-of-file is how the daemon learns that a supervisor has gone, even one
it did not start itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from virtkit import ipc
from virtkit.errors import IpcError, PeerGone

PEER = "the VM's supervisor"


class SupervisorGone(PeerGone):
    """The VM's supervisor process is not there (the VM has stopped or its supervisor died)."""


def raise_remote(msg: dict[str, Any]) -> None:
    """Raise the error in a supervisor's reply (its ready report, for one)."""
    ipc.result_of(msg)


def call(path: Path, op: str, args: dict[str, Any] | None = None, timeout: float | None = 30.0) -> Any:
    try:
        return ipc.call(path, op, args, timeout=timeout, peer=PEER)
    except PeerGone as e:
        raise SupervisorGone(e.message, e.hint) from e


def watch(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the supervisor's events, a ``hello`` with its status first; returns when it goes away."""
    try:
        status, events = ipc.subscribe(path, "watch", timeout=10.0, peer=PEER)
    except IpcError:
        return
    yield {"event": "hello", **status}
    yield from events
