from __future__ import annotations

import io
import lzma
import tarfile
from pathlib import Path

import pytest
from tests.support import debs

from virtkit.errors import ImageError


def ar(members: list[tuple[str, bytes]]) -> bytes:
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        out += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)


def fake_deb(tmp_path: Path, files: dict[str, bytes]) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo("./" + path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    deb = tmp_path / "x.deb"
    # an odd-sized first member checks the ar padding rule
    deb.write_bytes(
        ar([("debian-binary", b"2.0\n\n"), ("control.tar.xz", b"c"), ("data.tar.xz", lzma.compress(buf.getvalue()))])
    )
    return deb


def test_extract_returns_only_matching_members(tmp_path: Path) -> None:
    deb = fake_deb(
        tmp_path,
        {"boot/vmlinuz-6.1.0-9-amd64": b"kernel", "lib/modules/6.1.0-9-amd64/kernel/fs/9p/9p.ko": b"ko", "etc/x": b""},
    )
    got = debs.extract(deb, debs.matcher("boot/vmlinuz-*", "lib/modules/*/9p.ko"))
    assert got == {"boot/vmlinuz-6.1.0-9-amd64": b"kernel", "lib/modules/6.1.0-9-amd64/kernel/fs/9p/9p.ko": b"ko"}


def test_not_a_deb_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.deb"
    bad.write_bytes(b"PK\x03\x04 zip, not ar")
    with pytest.raises(ImageError, match=r"not a \.deb"):
        debs.extract(bad, lambda p: True)
