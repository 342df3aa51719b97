"""How the CLI reaches virtkitd: ``$VIRTKIT_URL`` (TCP, with ``$VIRTKIT_TOKEN``), or the local unix socket
(``$VIRTKIT_SOCKET``, default ``<state dir>/virtkitd.sock``) with a local daemon started on demand, in this
process's network namespace (``$VIRTKIT_NO_DAEMON_AUTOSTART=1`` turns that off)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from virtkit.cli import output
from virtkit.client import RawClient, default_socket


def client(timeout: float = 600.0) -> RawClient:
    url = os.environ.get("VIRTKIT_URL")
    if url:
        return RawClient(url=url, token=os.environ.get("VIRTKIT_TOKEN"), timeout=timeout)
    start = os.environ.get("VIRTKIT_NO_DAEMON_AUTOSTART", "") not in ("1", "true", "yes")
    return RawClient(socket=default_socket(), start_daemon=start, timeout=timeout)


@contextlib.contextmanager
def api() -> Iterator[RawClient]:
    """A client for the block; any virtkit error becomes one red line, its fix, and its exit code."""
    with output.reported():
        yield client()


def names(incomplete: str) -> list[str]:
    """Shell completion for domain names (silent when the daemon is not there)."""
    try:
        doms = RawClient(socket=default_socket(), timeout=2).list(all=True)
    except Exception:
        return []
    return [str(d["name"]) for d in doms if str(d["name"]).startswith(incomplete)]
