"""Doing things inside one network namespace (``None`` is the namespace virtkit itself runs in).

netlink goes through pyroute2 ``IPRoute(netns=...)``; child processes (nft, dnsmasq) enter the namespace in a
preexec hook; /proc/sys/net and the macvtap sysfs nodes are per-namespace, so they are read and written from a
forked child that has entered it (and, for sysfs, mounted its own view in a private mount namespace).
"""

from __future__ import annotations

import ctypes
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pyroute2 import IPRoute

from virtkit.errors import HostError

NETNS_DIR = Path("/var/run/netns")
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_REC, MS_PRIVATE = 0x4000, 1 << 18

T = TypeVar("T")
_libc = ctypes.CDLL(None, use_errno=True)


def check_exists(netns: str | None) -> None:
    # pyroute2 creates a missing namespace on demand; a typo must not conjure up an empty one.
    if netns is not None and not (NETNS_DIR / netns).exists():
        raise HostError(
            f"network namespace {netns!r} does not exist",
            hint=f"create it first (ip netns add {netns}) or pass another one",
        )


def enter(netns: str | None) -> None:
    """setns(2) into ``netns`` in the calling thread; used in preexec hooks of child processes."""
    if netns is None:
        return
    fd = os.open(NETNS_DIR / netns, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({netns}): {os.strerror(err)}")
    finally:
        os.close(fd)


def preexec(netns: str | None) -> Callable[[], None] | None:
    if netns is None:
        return None
    return lambda: enter(netns)


def ipr(netns: str | None) -> IPRoute:
    check_exists(netns)
    return IPRoute(netns=netns) if netns is not None else IPRoute()


def call_in(netns: str | None, fn: Callable[[], T], own_sysfs: bool = False) -> T:
    """Run ``fn`` in a forked child inside ``netns`` and return its (picklable) result or raise its error."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        result: tuple[bool, Any]
        try:
            enter(netns)
            if own_sysfs:
                _private_sysfs()
            result = (True, fn())
        except BaseException as e:
            result = (False, e)
        try:
            data = pickle.dumps(result)
        except Exception as e:
            data = pickle.dumps((False, RuntimeError(repr(e))))
        with os.fdopen(w, "wb") as f:
            f.write(data)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    if not data:
        raise HostError("a helper process inside the network namespace died")
    ok, value = pickle.loads(data)
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def _private_sysfs() -> None:
    # sysfs shows the net devices of the namespace that mounted it; mount a fresh one privately.
    if _libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    if _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    if _libc.mount(b"sysfs", b"/sys", b"sysfs", 0, None) != 0:
        raise OSError(ctypes.get_errno(), "mount sysfs")


def write_sysctl(netns: str | None, key: str, value: str) -> None:
    path = Path("/proc/sys") / key  # "net/ipv4/ip_forward": "/" because interface names may hold "."

    def go() -> None:
        path.write_text(value)

    call_in(netns, go)


def write_sysctls(netns: str | None, values: dict[str, str]) -> None:
    """Several sysctls in one helper process."""
    items = [(Path("/proc/sys") / k, v) for k, v in values.items()]

    def go() -> None:
        for path, v in items:
            path.write_text(v)

    call_in(netns, go)


def read_sysctl(netns: str | None, key: str) -> str:
    path = Path("/proc/sys") / key  # "net/ipv4/ip_forward": "/" because interface names may hold "."
    return call_in(netns, lambda: path.read_text().strip())


def macvtap_devnum(netns: str | None, ifname: str, ifindex: int) -> tuple[int, int]:
    """(major, minor) of the /dev/tapN character device of a macvtap link (udev would mknod it)."""

    def go() -> tuple[int, int]:
        text = Path(f"/sys/class/net/{ifname}/tap{ifindex}/dev").read_text().strip()
        major, minor = text.split(":")
        return int(major), int(minor)

    return call_in(netns, go, own_sysfs=True)
