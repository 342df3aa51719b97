from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from virtkit.images import cpio
from virtkit.images.cpio import Entry

ENTRIES = [
    Entry.file("init", b"#!/bin/sh\necho hi\n", 0o755),
    Entry.file("etc/deep/file", b"x" * 5),
    Entry.symlink("bin/sh", "busybox"),
    Entry.chardev("dev/console", 5, 1),
]


def test_parents_are_added_and_names_sorted(tmp_path: Path) -> None:
    out = tmp_path / "i.cpio.gz"
    cpio.write(ENTRIES, out)
    assert cpio.read_names(out) == ["bin", "bin/sh", "dev", "dev/console", "etc", "etc/deep", "etc/deep/file", "init"]


def test_reproducible(tmp_path: Path) -> None:
    cpio.write(ENTRIES, tmp_path / "a")
    cpio.write(list(reversed(ENTRIES)), tmp_path / "b")
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


@pytest.mark.skipif(shutil.which("cpio") is None, reason="needs cpio(1) to cross-check")
def test_cpio_tool_reads_it(tmp_path: Path) -> None:
    out = tmp_path / "i.cpio.gz"
    cpio.write(ENTRIES, out)
    listing = subprocess.run(
        f"zcat {out} | cpio -itv --quiet", shell=True, check=True, capture_output=True, text=True
    ).stdout
    lines = {line.split()[-1] if "->" not in line else line.split()[-3]: line for line in listing.splitlines()}
    assert lines["init"].startswith("-rwxr-xr-x")
    assert lines["dev/console"].startswith("crw-------")
    assert "5,   1" in lines["dev/console"] or "5, 1" in lines["dev/console"]
    assert lines["bin/sh"].startswith("lrwxrwxrwx") and lines["bin/sh"].endswith("-> busybox")
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run(
        f"zcat {out} | cpio -id --quiet --no-absolute-filenames 'init' 'etc/*'", shell=True, check=True, cwd=dest
    )
    assert (dest / "init").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert stat.S_IMODE((dest / "init").stat().st_mode) == 0o755
    assert (dest / "etc/deep/file").read_bytes() == b"xxxxx"


def parse(blob: bytes) -> list[tuple[str, int, tuple[int, int], bytes]]:
    """A reader written from the newc spec, independent of the writer."""
    out, off = [], 0
    while True:
        assert blob[off : off + 6] == b"070701", f"bad magic at {off}"
        f = [int(blob[off + 6 + 8 * i : off + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = f[1], f[6], f[9], f[10], f[11]
        name_off = off + 110
        name = blob[name_off : name_off + namesize - 1].decode()
        assert blob[name_off + namesize - 1] == 0
        data_off = name_off + namesize + (-(110 + namesize) % 4)
        assert data_off % 4 == 0
        data = blob[data_off : data_off + size]
        off = data_off + size + (-size % 4)
        if name == "TRAILER!!!":
            assert off == len(blob)
            return out
        out.append((name, mode, (rmaj, rmin), data))


PLAIN = [
    Entry.directory("bin"),
    Entry.file("bin/busybox", b"\x7fELF" + bytes(range(7)), 0o755),
    Entry.symlink("bin/sh", "busybox"),
    Entry.directory("dev"),
    Entry.chardev("dev/console", 5, 1),
    Entry.file("init", b"#!/bin/sh\necho hi\n", 0o755),
]


def test_uncompressed_round_trip_keeps_names_modes_devices_and_data() -> None:
    parsed = parse(cpio.archive(PLAIN))
    assert [p[0] for p in parsed] == [e.path for e in PLAIN]
    by_name = {p[0]: p for p in parsed}
    assert by_name["bin/busybox"][3] == PLAIN[1].data
    assert stat.S_IMODE(by_name["bin/busybox"][1]) == 0o755
    assert stat.S_ISLNK(by_name["bin/sh"][1]) and by_name["bin/sh"][3] == b"busybox"
    assert stat.S_ISCHR(by_name["dev/console"][1]) and by_name["dev/console"][2] == (5, 1)
    assert stat.S_ISDIR(by_name["dev"][1])


def test_uncompressed_archive_is_deterministic_and_sorted() -> None:
    assert cpio.archive(PLAIN) == cpio.archive(list(reversed(PLAIN)))


def test_an_empty_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="names no file"):
        cpio.archive([Entry.file("/", b"")])
    with pytest.raises(ValueError, match="names no file"):
        cpio.write([Entry.file("", b"")], tmp_path / "x")


def test_a_later_entry_for_the_same_path_wins() -> None:
    parsed = parse(cpio.archive([Entry.file("a", b"1"), Entry.file("a", b"2")]))
    assert [(p[0], p[3]) for p in parsed] == [("a", b"2")]


def test_gzip_form_is_the_uncompressed_form_compressed(tmp_path: Path) -> None:
    import gzip

    cpio.write(PLAIN, tmp_path / "i.cpio.gz")
    assert gzip.decompress((tmp_path / "i.cpio.gz").read_bytes()) == cpio.archive(PLAIN)


@pytest.mark.skipif(shutil.which("cpio") is None, reason="GNU cpio not installed")
def test_gnu_cpio_extracts_the_uncompressed_form(tmp_path: Path) -> None:
    entries = [e for e in PLAIN if not stat.S_ISCHR(e.mode)]  # mknod needs root; the parser covers it
    subprocess.run(["cpio", "-id", "--quiet"], input=cpio.archive(entries), cwd=tmp_path, check=True)
    assert (tmp_path / "init").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert (tmp_path / "bin" / "sh").readlink() == Path("busybox")
