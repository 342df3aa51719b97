"""The tiny control protocol between virtkitd and each VM's supervisor process.

A unix socket in the VM's directory; one JSON object per line each way. A request is ``{"op": ..., ...}``;
the answer is ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": ..., "kind": ..., "hint": ...}``.
``{"op": "watch"}`` keeps the connection open and streams ``{"event": ...}`` lines until the VM ends; its
end-of-file is how the daemon learns that a supervisor has gone, even one it did not start itself.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from virtkit import errors
from virtkit.errors import EngineError, VirtkitError

MAX_LINE = 64 * 1024 * 1024


class SupervisorGone(EngineError):
    """The VM's supervisor process is not there (the VM has stopped or its supervisor died)."""


def _connect(path: Path, timeout: float | None) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
    except OSError as e:
        s.close()
        raise SupervisorGone(f"no supervisor at {path}: {e.strerror or e}") from e
    return s


def _readline(f: Any) -> bytes:
    line: bytes = f.readline(MAX_LINE)
    return line


def raise_remote(msg: dict[str, Any]) -> None:
    kind = getattr(errors, str(msg.get("kind", "")), None)
    cls = kind if isinstance(kind, type) and issubclass(kind, VirtkitError) else EngineError
    raise cls(str(msg.get("error", "unknown error")), hint=msg.get("hint"))


def call(path: Path, op: str, args: dict[str, Any] | None = None, timeout: float | None = 30.0) -> Any:
    s = _connect(path, timeout)
    try:
        s.sendall(json.dumps({"op": op, **(args or {})}).encode() + b"\n")
        with s.makefile("rb") as f:
            line = _readline(f)
    except TimeoutError as e:
        raise EngineError(f"the VM's supervisor did not answer {op!r} within {timeout:.0f}s") from e
    except OSError as e:
        raise SupervisorGone(f"supervisor connection lost during {op!r}: {e}") from e
    finally:
        s.close()
    if not line:
        raise SupervisorGone(f"supervisor closed the connection during {op!r}")
    msg = json.loads(line)
    if not msg.get("ok"):
        raise_remote(msg)
    return msg.get("result")


def watch(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the supervisor's events; returns when it goes away."""
    s = _connect(path, 10.0)
    try:
        s.sendall(b'{"op": "watch"}\n')
        s.settimeout(None)
        with s.makefile("rb") as f:
            while True:
                line = _readline(f)
                if not line:
                    return
                yield json.loads(line)
    except OSError:
        return
    finally:
        s.close()
