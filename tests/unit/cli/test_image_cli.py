"""`virtkit image build|list` against a cache with fake entries (no apt, no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from virtkit import images
from virtkit.cli import image as image_cli
from virtkit.errors import ImageError
from virtkit.images import Image, store

runner = CliRunner()


def _entry(root: Path, name: str, digest: str, kernel_size: int, built_at: float) -> Image:
    d = store.entry_dir(root, name, digest)
    d.mkdir(parents=True)
    (d / store.KERNEL).write_bytes(b"k" * kernel_size)
    (d / store.INITRD).write_bytes(b"i" * 1000)
    store.write_manifest(
        d, name=name, digest=digest, kernel_version="6.1.0-57-cloud-amd64", built_at=built_at, inputs={}
    )
    img = store.load(d)
    assert img is not None
    return img


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VIRTKIT_HOME", str(tmp_path))
    return tmp_path / "images"


def test_list_table_and_json(home: Path) -> None:
    a = _entry(home, "tiny", "a" * 64, 3 * 2**20, 1_700_000_000.0)
    _entry(home, "tiny", "b" * 64, 2**20, 1_700_000_100.0)
    broken = _entry(home, "tiny", "c" * 64, 10, 1_700_000_200.0)
    broken.initrd.write_bytes(b"truncated")

    res = runner.invoke(image_cli.app, ["list"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split() == ["NAME", "KERNEL", "SIZE", "DIGEST", "BUILT"]
    assert len(lines) == 3  # the broken entry is not listed
    assert "bbbbbbbbbbbb" in lines[1] and "1.0 MiB" in lines[1]  # newest first
    assert "aaaaaaaaaaaa" in lines[2] and "3.0 MiB" in lines[2]
    assert len({line.index("6.1.0") for line in lines[1:]}) == 1  # columns aligned

    res = runner.invoke(image_cli.app, ["list", "--json"])
    data = json.loads(res.output)
    assert [d["digest"] for d in data] == ["b" * 64, "a" * 64]
    assert data[1]["size_bytes"] == a.size_bytes and data[1]["kernel"] == str(a.kernel)


def test_list_empty(home: Path) -> None:
    res = runner.invoke(image_cli.app, ["list", "--json"])
    assert res.exit_code == 0 and json.loads(res.output) == []


def test_build_passes_options_and_prints(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    img = _entry(home, "tiny", "d" * 64, 100, 1.0)
    seen: dict[str, object] = {}

    def fake_build(name: str, *, kernel_package: str, force: bool, progress: object) -> Image:
        seen.update(name=name, kernel_package=kernel_package, force=force)
        return img

    monkeypatch.setattr(images, "build_image", fake_build)
    res = runner.invoke(image_cli.app, ["build", "--kernel-package", "linux-image-amd64", "--force", "--json"])
    assert res.exit_code == 0, res.output
    assert seen == {"name": "tiny", "kernel_package": "linux-image-amd64", "force": True}
    assert json.loads(res.output)["digest"] == "d" * 64


def test_build_error_is_one_line_with_fix(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(name: str, **kw: object) -> Image:
        raise ImageError(f"unknown image {name!r}", hint="known images: tiny")

    monkeypatch.setattr(images, "build_image", fail)
    res = runner.invoke(image_cli.app, ["build", "huge"])
    assert res.exit_code == 125
    assert "unknown image 'huge'" in res.output and "fix: known images: tiny" in res.output
