"""Read chosen members straight out of a .deb (resolving and fetching it is virtkit.images.apt's job).

The ar container and the data tarball are streamed in Python (through lzma/gzip), so the generic kernel's
~400 MB of modules are never unpacked to disk; only the members asked for are kept in memory.
"""

from __future__ import annotations

import fnmatch
import gzip
import lzma
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, cast

from virtkit.errors import ImageError


def _ar_members(f: IO[bytes]) -> Iterator[tuple[str, int, int]]:
    """(name, offset, size) of each member of an ar archive (the .deb container)."""
    if f.read(8) != b"!<arch>\n":
        raise ImageError("not a .deb (ar) archive")
    while True:
        hdr = f.read(60)
        if len(hdr) < 60:
            return
        name = hdr[:16].decode().strip().rstrip("/")
        size = int(hdr[48:58].decode().strip())
        offset = f.tell()
        yield name, offset, size
        f.seek(offset + size + (size & 1))


def _open_data(f: IO[bytes], name: str) -> IO[bytes]:
    if name.endswith(".xz"):
        return cast(IO[bytes], lzma.open(f))
    if name.endswith(".gz"):
        return cast(IO[bytes], gzip.open(f))
    if name == "data.tar":
        return f
    raise ImageError(f"unsupported .deb payload {name}", hint="this reader handles data.tar.xz and .gz")


def extract(deb: Path, want: Callable[[str], bool]) -> dict[str, bytes]:
    """Contents of the regular files in deb whose path (like 'boot/vmlinuz-6.1.0-57-amd64') want() accepts."""
    found: dict[str, bytes] = {}
    with deb.open("rb") as f:
        for name, offset, _size in list(_ar_members(f)):
            if not name.startswith("data.tar"):
                continue
            f.seek(offset)
            with _open_data(f, name) as data, tarfile.open(fileobj=data, mode="r|") as tar:
                for member in tar:
                    path = member.name.removeprefix("./")
                    if member.isfile() and want(path):
                        fo = tar.extractfile(member)
                        assert fo is not None
                        found[path] = fo.read()
            return found
    raise ImageError(f"{deb} has no data.tar member")


def matcher(*patterns: str) -> Callable[[str], bool]:
    return lambda path: any(fnmatch.fnmatchcase(path, p) for p in patterns)
