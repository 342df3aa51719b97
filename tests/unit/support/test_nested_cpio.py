from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from virtkit.testing import cpio


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


ENTRIES = [
    cpio.Entry.directory("bin"),
    cpio.Entry.file("bin/busybox", b"\x7fELF" + bytes(range(7)), 0o755),
    cpio.Entry.symlink("bin/sh", "busybox"),
    cpio.Entry.directory("dev"),
    cpio.Entry.chardev("dev/console", 5, 1),
    cpio.Entry.file("init", b"#!/bin/sh\necho hi\n", 0o755),
]


def test_round_trip_keeps_names_modes_devices_and_data() -> None:
    parsed = parse(cpio.archive(ENTRIES))
    assert [p[0] for p in parsed] == [e.path for e in ENTRIES]
    by_name = {p[0]: p for p in parsed}
    assert by_name["bin/busybox"][3] == ENTRIES[1].data
    assert stat.S_IMODE(by_name["bin/busybox"][1]) == 0o755
    assert stat.S_ISLNK(by_name["bin/sh"][1]) and by_name["bin/sh"][3] == b"busybox"
    assert stat.S_ISCHR(by_name["dev/console"][1]) and by_name["dev/console"][2] == (5, 1)
    assert stat.S_ISDIR(by_name["dev"][1])


def test_archive_is_deterministic() -> None:
    assert cpio.archive(ENTRIES) == cpio.archive(list(ENTRIES))


@pytest.mark.parametrize("bad", [[cpio.Entry.file("a", b"1"), cpio.Entry.file("a", b"2")], [cpio.Entry.file("/", b"")]])
def test_repeated_or_empty_paths_are_refused(bad: list[cpio.Entry]) -> None:
    with pytest.raises(ValueError, match="empty or repeated"):
        cpio.archive(bad)


@pytest.mark.skipif(shutil.which("cpio") is None, reason="GNU cpio not installed")
def test_gnu_cpio_extracts_it(tmp_path: Path) -> None:
    entries = [e for e in ENTRIES if not stat.S_ISCHR(e.mode)]  # mknod needs root; the parser covers it
    subprocess.run(["cpio", "-id", "--quiet"], input=cpio.archive(entries), cwd=tmp_path, check=True)
    assert (tmp_path / "init").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert (tmp_path / "bin" / "sh").readlink() == Path("busybox")
