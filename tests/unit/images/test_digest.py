from __future__ import annotations

import dataclasses

import pytest

from virtkit.images import build
from virtkit.images.apt import Package

PKGS = [
    Package("linux-image-6.1.0-57-cloud-amd64", "6.1.192-3", "k.deb", 100, "a" * 64, "http://x/k.deb"),
    Package("busybox-static", "1:1.35.0-4", "b.deb", 10, "b" * 64, "http://x/b.deb"),
]
FILES = {"init": b"#!/bin/sh\n", "inittab": b"::respawn:/bin/sh\n"}


def test_same_inputs_same_digest_and_package_order_does_not_matter() -> None:
    d1 = build.digest_of("tiny", PKGS, FILES)
    assert d1 == build.digest_of("tiny", list(reversed(PKGS)), dict(reversed(FILES.items())))
    assert len(d1) == 64


@pytest.mark.parametrize(
    "change",
    [
        lambda p, f, m: ("tiny", [dataclasses.replace(p[0], version="6.1.193-1"), p[1]], f, m),
        lambda p, f, m: ("tiny", [dataclasses.replace(p[0], sha256="c" * 64), p[1]], f, m),
        lambda p, f, m: ("tiny", [*p, Package("libx", "1", "x.deb", 1, "d" * 64, "u")], f, m),
        lambda p, f, m: ("tiny", p, {**f, "init": b"#!/bin/sh\necho changed\n"}, m),
        lambda p, f, m: ("tiny", p, f, (*m, "virtio_balloon")),
        lambda p, f, m: ("other", p, f, m),
    ],
    ids=["version", "deb-sha256", "extra-package", "init-text", "modules", "name"],
)
def test_any_input_change_changes_digest(change) -> None:  # type: ignore[no-untyped-def]
    mods = ("virtio_pci",)
    base = build.digest_of("tiny", PKGS, FILES, mods)
    name, pkgs, files, modules = change(PKGS, FILES, mods)
    assert build.digest_of(name, pkgs, files, modules) != base


def test_builder_version_is_an_input(monkeypatch: pytest.MonkeyPatch) -> None:
    base = build.digest_of("tiny", PKGS, FILES)
    monkeypatch.setattr(build, "BUILDER_VERSION", build.BUILDER_VERSION + 1)
    assert build.digest_of("tiny", PKGS, FILES) != base


def test_shipped_guest_files_are_all_read() -> None:
    from virtkit.images import tiny

    files = tiny.guest_files()
    assert set(files) == set(tiny.GUEST_FILES)
    assert files["init"].startswith(b"#!/bin/sh")
    assert b"virtkit: ready" in files["virtkit-agent"]
