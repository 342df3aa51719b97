"""A tiny writer for the "newc" cpio format the kernel unpacks as an initramfs.

Written here rather than shelling out to cpio(1) so an archive is a pure function of its entries: sorted,
fixed mtimes and inode numbers, hence byte-identical builds and stable cache keys.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass

_TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    """One archive member: a regular file (data), a directory, a symlink (target) or a device node."""

    path: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)

    @staticmethod
    def file(path: str, data: bytes, perm: int = 0o644) -> Entry:
        return Entry(path, stat.S_IFREG | perm, data)

    @staticmethod
    def directory(path: str, perm: int = 0o755) -> Entry:
        return Entry(path, stat.S_IFDIR | perm)

    @staticmethod
    def symlink(path: str, target: str) -> Entry:
        return Entry(path, stat.S_IFLNK | 0o777, target.encode())

    @staticmethod
    def chardev(path: str, major: int, minor: int, perm: int = 0o600) -> Entry:
        return Entry(path, stat.S_IFCHR | perm, b"", (major, minor))


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _header(ino: int, mode: int, nlink: int, size: int, rdev: tuple[int, int], namesize: int) -> bytes:
    fields = (ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], namesize, 0)
    return b"070701" + b"".join(b"%08X" % f for f in fields)


def archive(entries: list[Entry]) -> bytes:
    """Serialise entries (parents first is the caller's business; paths are relative, no leading '/')."""
    out = bytearray()
    names: set[str] = set()
    for ino, e in enumerate([*entries, Entry(_TRAILER, 0)], start=1):
        path = e.path.lstrip("/")
        if not path or path in names:
            raise ValueError(f"cpio entry path {e.path!r} is empty or repeated")
        names.add(path)
        name = path.encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(e.mode) else 1
        if path == _TRAILER:
            ino, nlink = 0, 1
        hdr = _header(ino, e.mode, nlink, len(e.data), e.rdev, len(name))
        out += hdr + name + _pad4(len(hdr) + len(name)) + e.data + _pad4(len(e.data))
    return bytes(out)
