"""Resolution through apt's tools, with apt-cache/apt-get answers recorded from a Debian 12 host."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from virtkit.errors import ImageError
from virtkit.images import apt, build

DEPENDS = {
    "linux-image-cloud-amd64": "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-57-cloud-amd64\n",
    "linux-image-6.1.0-57-cloud-amd64": (
        "linux-image-6.1.0-57-cloud-amd64\n  Depends: kmod\n  Depends: linux-base\n"
        " |Depends: initramfs-tools\n  Depends: <linux-initramfs-tool>\n"
    ),
    "qemu-guest-agent": (
        "qemu-guest-agent\n  Depends: libc6\n  Depends: libglib2.0-0\nlibc6\n  Depends: libgcc-s1\n"
        "libglib2.0-0\n  Depends: libc6\n  Depends: zlib1g\nlibgcc-s1\n  Depends: libc6\nzlib1g\n"
        "<virtual-thing>\n"
    ),
}
URIS = {
    "linux-image-6.1.0-57-cloud-amd64": "'http://deb.debian.org/debian-security/pool/updates/main/l/linux-signed-amd64/linux-image-6.1.0-57-cloud-amd64_6.1.192-3_amd64.deb' linux-image-6.1.0-57-cloud-amd64_6.1.192-3_amd64.deb 26705532 SHA256:"
    + "1" * 64,
    "busybox-static": "'http://deb.debian.org/debian/pool/main/b/busybox/busybox-static_1.35.0-4%2bdeb12u1%2bb1_amd64.deb' busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb 928188 SHA256:"
    + "2" * 64,
    "qemu-guest-agent": "'http://x/q.deb' qemu-guest-agent_1%3a7.2+dfsg-7+deb12u18+b3_amd64.deb 346272 SHA256:"
    + "3" * 64,
    "libc6": "'http://x/c.deb' libc6_2.36-9+deb12u14_amd64.deb 2759320 SHA256:" + "4" * 64,
    "libglib2.0-0": "'http://x/g.deb' libglib2.0-0_2.74.6-2+deb12u9_amd64.deb 1403216 SHA256:" + "5" * 64,
    "libgcc-s1": "'http://x/s.deb' libgcc-s1_12.2.0-14+deb12u1_amd64.deb 49856 SHA256:" + "6" * 64,
    "zlib1g": "'http://x/z.deb' zlib1g_1%3a1.2.13.dfsg-1_amd64.deb 86684 SHA256:" + "7" * 64,
}


@pytest.fixture
def fake_apt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[list[str]]:
    monkeypatch.setenv("VIRTKIT_HOME", str(tmp_path))
    monkeypatch.setattr(build, "_may_update_apt", lambda: False)  # never apt-get update from a unit test
    calls: list[list[str]] = []

    def run(argv: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        calls.append(list(argv))
        if argv[:2] == ["apt-cache", "depends"]:
            name = argv[-1]
            if name not in DEPENDS:
                return subprocess.CompletedProcess(argv, 100, "", "E: No packages found\n")
            return subprocess.CompletedProcess(argv, 0, DEPENDS[name], "")
        if argv[:3] == ["apt-get", "download", "--print-uris"]:
            missing = [n for n in argv[3:] if n not in URIS]
            if missing:
                return subprocess.CompletedProcess(argv, 100, "", f"E: Unable to locate package {missing[0]}\n")
            return subprocess.CompletedProcess(argv, 0, "".join(URIS[n] + "\n" for n in argv[3:]), "")
        raise AssertionError(f"unexpected command {argv}")

    monkeypatch.setattr(apt, "_run", run)
    return calls


def test_depends_parsing(fake_apt: list[list[str]]) -> None:
    assert apt.depends("linux-image-6.1.0-57-cloud-amd64") == ["kmod", "linux-base", "initramfs-tools"]
    assert apt.depends("qemu-guest-agent", recurse=True) == ["libc6", "libglib2.0-0", "libgcc-s1", "zlib1g"]
    assert "--no-pre-depends" in fake_apt[-1]


def test_print_uris_parsing(fake_apt: list[list[str]]) -> None:
    (bb,) = apt.print_uris(["busybox-static"])
    assert bb.name == "busybox-static"
    assert bb.version == "1:1.35.0-4+deb12u1+b1"  # epoch unquoted
    assert bb.filename == "busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb"  # as apt writes it to disk
    assert bb.size == 928188 and bb.sha256 == "2" * 64
    assert bb.url.startswith("http://deb.debian.org/")


def test_resolve_follows_the_metapackage(fake_apt: list[list[str]]) -> None:
    pkgs = build.resolve("linux-image-cloud-amd64")
    assert {p.name for p in pkgs} == {
        "linux-image-6.1.0-57-cloud-amd64",
        "busybox-static",
        "qemu-guest-agent",
        "libc6",
        "libglib2.0-0",
        "libgcc-s1",
        "zlib1g",
    }
    assert "linux-image-cloud-amd64" not in {p.name for p in pkgs}  # the metapackage itself is not needed


def test_resolve_accepts_a_real_kernel_package(fake_apt: list[list[str]]) -> None:
    pkgs = build.resolve("linux-image-6.1.0-57-cloud-amd64")
    assert "linux-image-6.1.0-57-cloud-amd64" in {p.name for p in pkgs}


def test_resolve_is_memoised_until_apt_lists_change(fake_apt: list[list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    first = build.resolve("linux-image-cloud-amd64")
    n = len(fake_apt)
    assert build.resolve("linux-image-cloud-amd64") == first
    assert len(fake_apt) == n  # answered from the memo
    monkeypatch.setattr(apt, "lists_stamp", lambda: "lists changed")
    assert build.resolve("linux-image-cloud-amd64") == first
    assert len(fake_apt) > n


def test_unknown_kernel_package(fake_apt: list[list[str]]) -> None:
    with pytest.raises(ImageError) as info:
        build.resolve("linux-image-nonesuch")
    assert info.value.message == "kernel package 'linux-image-nonesuch' not found"
    assert info.value.hint == "check the name with apt-cache search linux-image; set --kernel-package"


def test_missing_dependency_package_is_named(fake_apt: list[list[str]]) -> None:
    del URIS["zlib1g"]
    try:
        with pytest.raises(ImageError, match="'zlib1g' not found"):
            apt.print_uris(["libc6", "zlib1g"])
    finally:
        URIS["zlib1g"] = "'http://x/z.deb' zlib1g_1%3a1.2.13.dfsg-1_amd64.deb 86684 SHA256:" + "7" * 64


def test_cached_deb_is_verified(tmp_path: Path) -> None:
    import hashlib

    data = b"deb contents"
    pkg = apt.Package("p", "1", "p_1_amd64.deb", len(data), hashlib.sha256(data).hexdigest(), "u")
    assert apt.cached_deb(pkg, tmp_path) is None
    (tmp_path / pkg.filename).write_bytes(data)
    assert apt.cached_deb(pkg, tmp_path) == tmp_path / pkg.filename
    (tmp_path / pkg.filename).write_bytes(b"deb contentX")  # same size, other bytes
    assert apt.cached_deb(pkg, tmp_path) is None


@pytest.fixture
def fake_apt_get(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An apt-get on PATH that 'downloads' name=version as the file apt would write; logs its calls."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls.log"
    script = bindir / "apt-get"
    script.write_text(f"""#!/bin/sh
echo "$@" >> {log}
shift  # download
for spec in "$@"; do
    name=${{spec%%=*}}
    [ -n "$FAIL" ] && [ "$name" = "$FAIL" ] && {{ echo "E: Failed to fetch $name 404 Not Found" >&2; exit 100; }}
    printf 'contents of %s' "$name" > "${{name}}_1_amd64.deb"
done
""")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return log


def _pkg(name: str, data: bytes | None = None) -> apt.Package:
    import hashlib

    data = f"contents of {name}".encode() if data is None else data
    return apt.Package(name, "1", f"{name}_1_amd64.deb", len(data), hashlib.sha256(data).hexdigest(), "u")


def test_download_fetches_missing_in_one_call_and_reuses_the_cache(fake_apt_get: Path, tmp_path: Path) -> None:
    debs = tmp_path / "debs"
    seen: list[int] = []
    paths = apt.download([_pkg("a"), _pkg("b")], debs, on_bytes=seen.append)
    assert [p.read_bytes() for p in paths] == [b"contents of a", b"contents of b"]
    assert fake_apt_get.read_text().splitlines() == ["download a=1 b=1"]
    apt.download([_pkg("a"), _pkg("b"), _pkg("c")], debs)
    assert fake_apt_get.read_text().splitlines()[1:] == ["download c=1"]  # only what was missing
    assert not list(debs.glob(".dl-*"))  # temporary directories are gone


def test_download_rejects_a_deb_that_does_not_match_the_lists(fake_apt_get: Path, tmp_path: Path) -> None:
    bad = _pkg("a", data=b"contents of a, but another build")
    with pytest.raises(ImageError, match="does not match the SHA256"):
        apt.download([bad], tmp_path / "debs")
    assert not (tmp_path / "debs" / bad.filename).exists()


def test_download_failure_names_the_package(
    fake_apt_get: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAIL", "b")
    with pytest.raises(ImageError, match="downloading b failed: E: Failed to fetch b 404"):
        apt.download([_pkg("a"), _pkg("b")], tmp_path / "debs")


def test_not_found_runs_apt_update_once_as_root(fake_apt: list[list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    updates: list[int] = []
    monkeypatch.setattr(build, "_may_update_apt", lambda: True)
    monkeypatch.setattr(apt, "apt_update", lambda: updates.append(1))
    with pytest.raises(ImageError, match="kernel package 'linux-image-nonesuch' not found"):
        build.resolve("linux-image-nonesuch")
    assert updates == [1]


def test_not_found_and_offline_names_both(fake_apt: list[list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    from virtkit.errors import HostError

    def offline() -> None:
        raise HostError("apt-get update failed: Temporary failure resolving 'deb.debian.org'")

    monkeypatch.setattr(build, "_may_update_apt", lambda: True)
    monkeypatch.setattr(apt, "apt_update", offline)
    with pytest.raises(HostError) as info:
        build.resolve("linux-image-nonesuch")
    assert "kernel package 'linux-image-nonesuch' not found" in info.value.message
    assert "Temporary failure resolving" in info.value.message
    assert info.value.hint == "check the name with apt-cache search linux-image; set --kernel-package"
