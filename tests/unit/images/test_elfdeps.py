"""DT_NEEDED closure over tiny ELF files built here, in a fake unpacked-package tree."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from virtkit.errors import ImageError
from virtkit.images import elfdeps

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

HOST_LIBDIR = Path("/lib/x86_64-linux-gnu")
LIBDIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu")


def _gcc(*args: str) -> None:
    subprocess.run(["gcc", *args], check=True, capture_output=True)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/ like unpacked debs: libb (no deps) <- liba (needs libb, libc) <- prog; loader via /lib64."""
    if not (HOST_LIBDIR / "libc.so.6").exists():
        pytest.skip("needs a Debian-style multiarch host libc")
    root = tmp_path / "root"
    lib = root / "lib/x86_64-linux-gnu"
    usrlib = root / "usr/lib/x86_64-linux-gnu"
    lib.mkdir(parents=True)
    usrlib.mkdir(parents=True)
    src = tmp_path / "src"
    src.mkdir()
    (src / "b.c").write_text("int b(void) { return 2; }\n")
    (src / "a.c").write_text('#include <stdio.h>\nint b(void);\nint a(void) { puts("a"); return b(); }\n')
    (src / "p.c").write_text("int a(void);\nint main(void) { return a(); }\n")
    # libb lives in usr/lib and is found through a soname symlink, as in the real packages.
    _gcc("-shared", "-fPIC", "-Wl,-soname,libb.so.1", "-o", str(usrlib / "libb.so.1.0.0"), str(src / "b.c"))
    (usrlib / "libb.so.1").symlink_to("libb.so.1.0.0")
    _gcc(
        "-shared",
        "-fPIC",
        "-Wl,-soname,liba.so.1",
        "-o",
        str(lib / "liba.so.1"),
        str(src / "a.c"),
        f"-L{usrlib}",
        "-l:libb.so.1",
    )
    root.joinpath("usr/bin").mkdir(parents=True)
    _gcc("-o", str(root / "usr/bin/prog"), str(src / "p.c"), f"-L{lib}", "-l:liba.so.1", f"-Wl,-rpath-link,{usrlib}")
    for name in ("libc.so.6", "ld-linux-x86-64.so.2"):
        shutil.copy(HOST_LIBDIR / name, lib / name)
    (root / "lib64").mkdir()
    # An absolute symlink must resolve inside the tree, not on the host.
    (root / "lib64/ld-linux-x86-64.so.2").symlink_to("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    return root


def test_elf_info(tree: Path) -> None:
    info = elfdeps.elf_info(tree / "usr/bin/prog")
    assert info.interpreter == "/lib64/ld-linux-x86-64.so.2"
    assert "liba.so.1" in info.needed
    assert elfdeps.elf_info(tree / "lib/x86_64-linux-gnu/liba.so.1").interpreter is None


def test_closure_is_transitive_and_includes_the_interpreter(tree: Path) -> None:
    libs = {lib.soname: lib.source for lib in elfdeps.closure([tree / "usr/bin/prog"], tree, LIBDIRS)}
    assert set(libs) == {"liba.so.1", "libb.so.1", "libc.so.6", "ld-linux-x86-64.so.2", "/lib64/ld-linux-x86-64.so.2"}
    assert libs["libb.so.1"] == tree / "usr/lib/x86_64-linux-gnu/libb.so.1.0.0"  # symlink resolved
    assert libs["/lib64/ld-linux-x86-64.so.2"] == tree / "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    for src in libs.values():
        assert src.is_file() and src.is_relative_to(tree)


def test_missing_library_names_who_needs_it(tree: Path) -> None:
    (tree / "usr/lib/x86_64-linux-gnu/libb.so.1").unlink()
    with pytest.raises(ImageError, match=r"libb\.so\.1 \(needed by liba\.so\.1\)"):
        elfdeps.closure([tree / "usr/bin/prog"], tree, LIBDIRS)


def test_missing_interpreter(tree: Path) -> None:
    (tree / "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2").unlink()
    with pytest.raises(ImageError, match="interpreter"):
        elfdeps.closure([tree / "usr/bin/prog"], tree, LIBDIRS)


def test_not_an_elf_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"#!/bin/sh\n")
    with pytest.raises(ImageError, match="cannot read ELF"):
        elfdeps.elf_info(junk)
