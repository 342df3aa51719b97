"""Debian packages as build inputs: resolve a metapackage, download the .deb once, read members from it.

The .deb is read in Python (ar container, then the data tarball through lzma/gzip) so no dpkg-deb run or
unpacked tree is needed; only the members asked for are kept in memory.
"""

from __future__ import annotations

import fnmatch
import gzip
import lzma
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, cast

from virtkit.errors import HostError, ImageError

_APT_HINT = "run `apt-get update` on a Debian host (bookworm or newer) with network access to the mirror"


def _apt_cache_show(package: str) -> str:
    if shutil.which("apt-cache") is None:
        raise HostError("apt-cache is not installed", hint=_APT_HINT)
    proc = subprocess.run(
        ["apt-cache", "show", "--no-all-versions", package], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise HostError(f"apt knows no package {package!r}: {proc.stderr.strip()}", hint=_APT_HINT)
    return proc.stdout


def _field(stanza: str, name: str) -> str:
    m = re.search(rf"^{name}: (.*)$", stanza, re.MULTILINE)
    if not m:
        raise HostError(f"apt-cache show has no {name} field", hint=_APT_HINT)
    return m.group(1).strip()


def resolve(package: str, prefix: str = "linux-image-") -> tuple[str, str]:
    """(name, version) of the concrete package behind a metapackage such as linux-image-amd64."""
    stanza = _apt_cache_show(package)
    for dep in _field(stanza, "Depends").split(","):
        name = dep.strip().split(" ")[0].split(":")[0]
        if name.startswith(prefix) and name != package:
            concrete = _apt_cache_show(name)
            return name, _field(concrete, "Version")
    return package, _field(stanza, "Version")


def download(name: str, version: str, dest_dir: Path) -> Path:
    """The .deb for name=version, fetched with `apt-get download` into dest_dir unless already there."""
    safe = re.sub(r"[^A-Za-z0-9.+~-]", "_", f"{name}_{version}") + ".deb"
    target = dest_dir / safe
    if target.exists():
        return target
    if shutil.which("apt-get") is None:
        raise HostError("apt-get is not installed", hint=_APT_HINT)
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".dl-") as tmp:
        os.chmod(tmp, 0o755)  # apt drops privileges to _apt when it can write the target directory
        proc = subprocess.run(
            ["apt-get", "download", "-q", f"{name}={version}"],
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
        )
        debs = list(Path(tmp).glob("*.deb"))
        if proc.returncode != 0 or len(debs) != 1:
            raise HostError(f"apt-get download {name}={version} failed: {proc.stderr.strip()[-300:]}", hint=_APT_HINT)
        os.replace(debs[0], target)
    return target


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
