"""Build (or reuse) a guest image from Debian packages, content-addressed by everything that goes into it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from virtkit.config.defaults import image_dir
from virtkit.errors import ImageError
from virtkit.images import apt, cpio, elfdeps, kmod, store, tiny
from virtkit.images.store import Image

# Bump when the build itself changes in a way that changes the output for the same inputs.
BUILDER_VERSION = 1
KNOWN_IMAGES: tuple[str, ...] = ("tiny",)
DEFAULT_KERNEL_PACKAGE = "linux-image-cloud-amd64"

Progress = Callable[[str, float], None]


def _check_name(name: str) -> None:
    if name not in KNOWN_IMAGES:
        raise ImageError(f"unknown image {name!r}", hint=f"known images: {', '.join(KNOWN_IMAGES)}")


def _resolve_uncached(kernel_package: str) -> list[apt.Package]:
    try:
        kdeps = apt.depends(kernel_package)
    except apt.PackageNotFound as exc:
        hint = "check the name with apt-cache search linux-image; set --kernel-package"
        raise ImageError(f"kernel package {kernel_package!r} not found", hint=hint) from exc
    # A metapackage (linux-image-cloud-amd64) points at the real one (linux-image-6.1.0-57-cloud-amd64).
    images = [d for d in kdeps if d.startswith("linux-image-")]
    kernel = images[0] if images else kernel_package
    names = [kernel, tiny.BUSYBOX_PACKAGE, tiny.AGENT_PACKAGE, *apt.depends(tiny.AGENT_PACKAGE, recurse=True)]
    return apt.print_uris(list(dict.fromkeys(names)))


def _may_update_apt() -> bool:
    return os.geteuid() == 0


def resolve(kernel_package: str, progress: Progress | None = None) -> list[apt.Package]:
    """Exact packages: kernel, busybox, the agent and its libraries. Runs apt-get update once if needed."""
    memo = image_dir() / "resolved.json"

    def compute() -> list[apt.Package]:
        _report(progress, "resolving packages", 0.0)
        try:
            return _resolve_uncached(kernel_package)
        except ImageError:
            if not _may_update_apt():
                raise
            apt.apt_update()
            return _resolve_uncached(kernel_package)

    return apt.memoised(memo, f"{kernel_package}|{BUILDER_VERSION}", compute)


def digest_of(name: str, packages: list[apt.Package], guest_files: dict[str, bytes],
              modules: tuple[str, ...] = tiny.MODULES) -> str:
    """SHA256 over every input: builder version, image name, exact packages, guest files, module list."""
    h = hashlib.sha256()
    h.update(f"virtkit-image/{BUILDER_VERSION}\n{name}\n".encode())
    for p in sorted(packages, key=lambda p: p.name):
        h.update(f"pkg {p.name} {p.version} {p.sha256}\n".encode())
    for fname in sorted(guest_files):
        h.update(f"file {fname} {hashlib.sha256(guest_files[fname]).hexdigest()}\n".encode())
    h.update(f"modules {','.join(modules)}\n".encode())
    return h.hexdigest()


def _report(progress: Progress | None, stage: str, fraction: float) -> None:
    if progress is not None:
        progress(stage, min(1.0, max(0.0, fraction)))


def _build_into(out: Path, work: Path, name: str, packages: list[apt.Package], digest: str,
                progress: Progress | None) -> None:
    debs = image_dir() / "debs"
    total = sum(p.size for p in packages) or 1
    done = 0
    for pkg in packages:
        _report(progress, f"downloading {pkg.name}", 0.05 + 0.45 * done / total)
        apt.download(pkg, debs)
        done += pkg.size
    root = work / "root"
    for i, pkg in enumerate(packages):
        _report(progress, f"unpacking {pkg.name}", 0.5 + 0.2 * i / len(packages))
        apt.unpack(debs / pkg.filename, root)

    _report(progress, "resolving modules and libraries", 0.7)
    vmlinuz, version = tiny.find_kernel(root)
    moddir = root / "lib" / "modules" / version
    modules = kmod.load_order(kmod.scan_modules(moddir), tiny.MODULES, kmod.builtin_modules(moddir))
    agent = root / tiny.AGENT_BINARY
    if not agent.is_file():
        raise ImageError(f"{tiny.AGENT_PACKAGE} has no {tiny.AGENT_BINARY}")
    libraries = elfdeps.closure([agent], root, tiny.LIBDIRS)

    _report(progress, "packing initramfs", 0.75)
    cpio.write(tiny.entries(root, version, modules, libraries), out / store.INITRD)
    shutil.copyfile(vmlinuz, out / store.KERNEL)
    inputs: dict[str, object] = {
        "builder": BUILDER_VERSION,
        "packages": {p.name: p.version for p in packages},
        "modules": [m.name for m in modules],
        "libraries": sorted(lib.soname for lib in libraries),
    }
    store.write_manifest(out, name=name, digest=digest, kernel_version=version, built_at=time.time(),
                         inputs=inputs)


def build_image(name: str = "tiny", *, kernel_package: str = DEFAULT_KERNEL_PACKAGE, force: bool = False,
                progress: Progress | None = None) -> Image:
    """The image *name* from the cache, built first if it is missing, stale, corrupt or *force* is set."""
    _check_name(name)
    # Progress is reported only for real work, so that a cache hit shows no progress bar at all.
    packages = resolve(kernel_package, progress)
    digest = digest_of(name, packages, tiny.guest_files())
    root = image_dir()
    final = store.entry_dir(root, name, digest)
    if not force and (img := store.load(final)) is not None:
        return img
    with store.locked(root):
        # Another process may have built it while this one waited for the lock.
        if not force and (img := store.load(final)) is not None:
            return img
        store.clean_stale(root)
        with tempfile.TemporaryDirectory(dir=root, prefix=".build-") as tmp:
            out = Path(tmp) / "out"
            out.mkdir()
            _build_into(out, Path(tmp), name, packages, digest, progress)
            store.publish(out, final)
    img = store.load(final)
    if img is None:
        raise ImageError(f"image {name} at {final} failed verification right after building",
                         hint=f"check free space in {root}")
    _report(progress, "done", 1.0)
    return img


def list_images() -> list[Image]:
    """Valid cached images, newest first per name (corrupt entries are skipped)."""
    return store.list_images(image_dir())


def describe(img: Image) -> dict[str, object]:
    """An image as JSON-ready data (for ``--json``)."""
    return {
        "name": img.name,
        "kernel": str(img.kernel),
        "initrd": str(img.initrd),
        "kernel_version": img.kernel_version,
        "digest": img.digest,
        "size_bytes": img.size_bytes,
        "built_at": img.built_at,
    }


def manifest_inputs(img: Image) -> dict[str, object]:
    data = json.loads((img.kernel.parent / store.MANIFEST).read_text())
    inputs = data.get("inputs", {})
    return inputs if isinstance(inputs, dict) else {}
