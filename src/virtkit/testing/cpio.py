"""An uncompressed "newc" cpio archive in memory, for the nested harness's initramfs.

virtkit.images.cpio writes gzip'd archives for guests; L1 runs under TCG, where the kernel's gunzip of a
6 MB initramfs is emulated too, so the harness keeps its archives uncompressed. Same Entry type; entries
are written in the order given, with fixed inode numbers and no mtimes, so builds are byte-identical.
"""

from __future__ import annotations

import stat

from virtkit.images.cpio import Entry

_TRAILER = "TRAILER!!!"

__all__ = ["Entry", "archive"]


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
