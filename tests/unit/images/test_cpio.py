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
