"""The cache: reuse, detection of truncated/corrupt artifacts, rebuild, atomicity. Packages are faked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from virtkit.errors import HostError, ImageError
from virtkit.images import KNOWN_IMAGES, build, build_image, list_images, store
from virtkit.images.apt import Package


class FakeBuilder:
    """Stands in for download+unpack+pack: writes a recognisable kernel and initrd."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail = False

    def __call__(
        self,
        out: Path,
        work: Path,
        name: str,
        packages: list[Package],
        digest: str,
        progress: object,
        *,
        kernel_package: str,
    ) -> None:
        self.calls += 1
        (out / store.KERNEL).write_bytes(b"K" * 4096)
        (out / store.INITRD).write_bytes(b"I" * 8192)
        if self.fail:
            raise KeyboardInterrupt  # like Ctrl-C in the middle of a build
        store.write_manifest(
            out,
            name=name,
            digest=digest,
            kernel_version="6.1.0-test",
            built_at=1.0,
            inputs={"kernel_package": kernel_package},
        )


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeBuilder:
    monkeypatch.setenv("VIRTKIT_HOME", str(tmp_path))
    pkgs = [Package("linux-image-x", "1", "k.deb", 1, "a" * 64, "u")]
    monkeypatch.setattr(build, "resolve", lambda kernel_package, progress=None: pkgs)
    fb = FakeBuilder()
    monkeypatch.setattr(build, "_build_into", fb)
    return fb


def test_builds_once_then_reuses(fake: FakeBuilder) -> None:
    img = build_image()
    assert fake.calls == 1
    assert img.kernel.read_bytes() == b"K" * 4096
    assert img.size_bytes == 4096 + 8192
    assert img.kernel_version == "6.1.0-test"
    again = build_image()
    assert fake.calls == 1
    assert again == img
    assert list_images() == [img]


def test_force_rebuilds(fake: FakeBuilder) -> None:
    build_image()
    build_image(force=True)
    assert fake.calls == 2


@pytest.mark.parametrize("artifact", [store.KERNEL, store.INITRD])
def test_truncated_artifact_is_detected_and_rebuilt(fake: FakeBuilder, artifact: str) -> None:
    img = build_image()
    path = img.kernel.parent / artifact
    with open(path, "r+b") as f:
        f.truncate(100)
    assert list_images() == []  # a broken entry is not offered
    rebuilt = build_image()
    assert fake.calls == 2
    assert path.stat().st_size > 100
    assert rebuilt.digest == img.digest


def test_corrupt_artifact_of_same_size_is_detected_and_rebuilt(fake: FakeBuilder) -> None:
    img = build_image()
    data = bytearray(img.initrd.read_bytes())
    data[1234] ^= 0xFF
    img.initrd.write_bytes(bytes(data))
    assert store.load(img.kernel.parent) is None
    build_image()
    assert fake.calls == 2
    assert img.initrd.read_bytes() == b"I" * 8192


def test_missing_or_garbled_manifest_is_rebuilt(fake: FakeBuilder) -> None:
    img = build_image()
    (img.kernel.parent / store.MANIFEST).write_text("{not json")
    build_image()
    assert fake.calls == 2


def test_interrupted_build_leaves_no_entry(fake: FakeBuilder, tmp_path: Path) -> None:
    fake.fail = True
    with pytest.raises(KeyboardInterrupt):
        build_image()
    images = tmp_path / "images"
    assert [p.name for p in images.iterdir() if not p.name.startswith(".lock")] == []
    assert list_images() == []
    fake.fail = False
    assert build_image().kernel.is_file()


def test_stale_build_dirs_are_cleaned(fake: FakeBuilder, tmp_path: Path) -> None:
    stale = tmp_path / "images" / ".build-killed"
    stale.mkdir(parents=True)
    (stale / "junk").write_text("x")
    stale_download = tmp_path / "images" / "debs" / ".dl-killed"
    stale_download.mkdir(parents=True)
    build_image()
    assert not stale.exists()
    assert not stale_download.exists()


def test_unknown_image_name_lists_known_ones(fake: FakeBuilder) -> None:
    with pytest.raises(ImageError) as info:
        build_image("huge")
    assert "huge" in info.value.message
    assert info.value.hint is not None
    for name in KNOWN_IMAGES:
        assert name in info.value.hint
    assert fake.calls == 0


def test_known_images() -> None:
    assert KNOWN_IMAGES == ("tiny",)


def test_without_apt_a_cached_image_of_the_same_kernel_package_is_used(
    fake: FakeBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    img = build_image()

    def no_apt(kernel_package: str, progress: object = None) -> list[Package]:
        raise HostError("apt-cache not found: building images needs apt (a Debian host)")

    monkeypatch.setattr(build, "resolve", no_apt)
    assert build_image() == img
    with pytest.raises(HostError):
        build_image(kernel_package="linux-image-amd64")  # nothing cached for that kernel
    with pytest.raises(HostError):
        build_image(force=True)
    assert fake.calls == 1


def test_concurrent_builds_build_once(fake: FakeBuilder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two builders at once (threads here; processes alike, flock is per open file): one builds, one reuses."""
    import threading
    import time

    inner = FakeBuilder.__call__
    started = threading.Event()

    def slow(self: FakeBuilder, *args: object, **kw: object) -> None:
        started.set()
        time.sleep(0.5)
        inner(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(FakeBuilder, "__call__", slow)
    results: list[object] = []
    first = threading.Thread(target=lambda: results.append(build_image()))
    first.start()
    assert started.wait(5)
    second = build_image()  # waits for the lock, then finds the finished entry
    first.join()
    assert fake.calls == 1
    assert results == [second]


def test_prune_keeps_the_newest_valid_entry_and_its_debs(
    fake: FakeBuilder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "images"
    old = build_image()
    # A newer build from other packages (what an apt upgrade leads to).
    newer_pkgs = [Package("linux-image-x", "2", "k2.deb", 1, "b" * 64, "u")]
    monkeypatch.setattr(build, "resolve", lambda kernel_package, progress=None: newer_pkgs)
    new = build_image()
    assert new.digest != old.digest
    for name, inputs_debs in ((old, ["k.deb"]), (new, ["k2.deb"])):
        manifest = name.kernel.parent / store.MANIFEST
        data = json.loads(manifest.read_text())
        data["inputs"]["debs"] = inputs_debs
        data["built_at"] = 1.0 if name is old else 2.0
        manifest.write_text(json.dumps(data))
    debs = root / "debs"
    debs.mkdir()
    for f in ("k.deb", "k2.deb", "unrelated.deb"):
        (debs / f).write_bytes(b"x")
    removed = build.prune_images()
    assert set(removed) == {old.kernel.parent, debs / "k.deb", debs / "unrelated.deb"}
    assert [i.digest for i in list_images()] == [new.digest]
    assert sorted(p.name for p in debs.iterdir()) == ["k2.deb"]
    assert build.prune_images() == []  # nothing more to do
