"""The image cache: one directory per (name, digest) with a manifest of its artifacts' sizes and SHA256.

An entry is published by renaming a finished temporary directory, so an interrupted build leaves no entry;
a truncated or corrupted artifact fails verification and the entry is treated as absent.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from virtkit.images.apt import sha256_file

MANIFEST = "manifest.json"
KERNEL = "vmlinuz"
INITRD = "initrd.img"


@dataclass(frozen=True)
class Image:
    """A built guest image: a kernel and an initramfs to boot it with."""

    name: str
    kernel: Path
    initrd: Path
    kernel_version: str
    digest: str
    size_bytes: int
    built_at: float


def entry_dir(root: Path, name: str, digest: str) -> Path:
    return root / f"{name}-{digest[:16]}"


def artifact_record(path: Path) -> dict[str, object]:
    return {"size": path.stat().st_size, "sha256": sha256_file(path)}


def write_manifest(
    directory: Path, *, name: str, digest: str, kernel_version: str, built_at: float, inputs: dict[str, object]
) -> None:
    manifest = {
        "name": name,
        "digest": digest,
        "kernel_version": kernel_version,
        "built_at": built_at,
        "inputs": inputs,
        "artifacts": {a: artifact_record(directory / a) for a in (KERNEL, INITRD)},
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def load(directory: Path, *, deep: bool = True) -> Image | None:
    """The image in *directory* if its manifest is readable and every artifact matches it, else None.

    ``deep`` checks SHA256 as well as sizes (a 20 MB image hashes in well under a second).
    """
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        artifacts = manifest["artifacts"]
        total = 0
        for artifact in (KERNEL, INITRD):
            want = artifacts[artifact]
            path = directory / artifact
            size = path.stat().st_size
            if size != want["size"] or (deep and sha256_file(path) != want["sha256"]):
                return None
            total += size
        return Image(
            name=str(manifest["name"]),
            kernel=directory / KERNEL,
            initrd=directory / INITRD,
            kernel_version=str(manifest["kernel_version"]),
            digest=str(manifest["digest"]),
            size_bytes=total,
            built_at=float(manifest["built_at"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_inputs(directory: Path) -> dict[str, object]:
    """The recorded build inputs of an entry ({} when unreadable)."""
    try:
        inputs = json.loads((directory / MANIFEST).read_text()).get("inputs", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return inputs if isinstance(inputs, dict) else {}


def entries(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).exists())


def list_images(root: Path) -> list[Image]:
    images = [img for d in entries(root) if (img := load(d)) is not None]
    return sorted(images, key=lambda i: (i.name, -i.built_at))


def publish(tmp: Path, final: Path) -> None:
    """Move a finished build into place, replacing a broken entry of the same digest."""
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def discard(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def clean_stale(root: Path) -> None:
    """Remove leftovers of builds killed before they could clean up (call with the lock held)."""
    for p in [*root.glob(".build-*"), *root.glob("debs/.dl-*")]:
        shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Serialise builds across processes: two `virtkit image build` runs must not race on one entry."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
