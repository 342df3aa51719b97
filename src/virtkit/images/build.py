"""Build (or reuse) a guest image from Debian packages, content-addressed by everything that goes into it."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from virtkit.config.defaults import image_dir
from virtkit.errors import HostError, ImageError
from virtkit.images import apt, cpio, elfdeps, kmod, store, tiny
from virtkit.images.store import Image

# Bump when the build itself changes in a way that changes the output for the same inputs.
BUILDER_VERSION = 2
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
        except ImageError as first:
            if not _may_update_apt():
                raise
            try:
                apt.apt_update()
            except HostError as exc:  # offline: say both what was missing and why apt could not help
                raise HostError(f"{first.message}; {exc.message}", hint=first.hint) from first
            return _resolve_uncached(kernel_package)

    return apt.memoised(memo, f"{kernel_package}|{BUILDER_VERSION}", compute)


def digest_of(
    name: str, packages: list[apt.Package], guest_files: dict[str, bytes], modules: tuple[str, ...] = tiny.MODULES
) -> str:
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


def _build_into(
    out: Path,
    work: Path,
    name: str,
    packages: list[apt.Package],
    digest: str,
    progress: Progress | None,
    *,
    kernel_package: str,
) -> None:
    debs = image_dir() / "debs"
    total = sum(p.size for p in packages) or 1
    missing = sum(p.size for p in packages if apt.cached_deb(p, debs) is None) or 1
    _report(progress, "downloading packages", 0.05)
    apt.download(packages, debs, on_bytes=lambda n: _report(progress, "downloading packages", 0.05 + 0.4 * n / missing))
    root = work / "root"
    done = 0
    for pkg in packages:
        _report(progress, f"unpacking {pkg.name}", 0.45 + 0.25 * done / total)
        apt.unpack(debs / pkg.filename, root)
        done += pkg.size

    _report(progress, "resolving modules and libraries", 0.7)
    vmlinuz, version = tiny.find_kernel(root)
    moddir = root / "lib" / "modules" / version
    modules = kmod.load_order(kmod.scan_modules(moddir), tiny.MODULES, kmod.builtin_modules(moddir))
    agent = root / tiny.AGENT_BINARY
    if not agent.is_file():
        raise ImageError(f"{tiny.AGENT_PACKAGE} has no {tiny.AGENT_BINARY}")
    libraries = elfdeps.closure([agent], root, tiny.LIBDIRS)

    _report(progress, "packing initramfs", 0.75)
    cpio.write(
        list(tiny.entries(root, version, modules, libraries)),
        out / store.INITRD,
        on_progress=lambda f: _report(progress, "packing initramfs", 0.75 + 0.23 * f),
    )
    shutil.copyfile(vmlinuz, out / store.KERNEL)
    inputs: dict[str, object] = {
        "builder": BUILDER_VERSION,
        "kernel_package": kernel_package,
        "packages": {p.name: p.version for p in packages},
        "debs": sorted(p.filename for p in packages),
        "modules": [m.name for m in modules],
        "libraries": sorted(lib.soname for lib in libraries),
    }
    store.write_manifest(out, name=name, digest=digest, kernel_version=version, built_at=time.time(), inputs=inputs)


def build_image(
    name: str = "tiny",
    *,
    kernel_package: str = DEFAULT_KERNEL_PACKAGE,
    force: bool = False,
    progress: Progress | None = None,
) -> Image:
    """The image *name* from the cache, built first if it is missing, stale, corrupt or *force* is set."""
    _check_name(name)
    # Progress is reported only for real work, so that a cache hit shows no progress bar at all.
    try:
        packages = resolve(kernel_package, progress)
    except HostError:
        # No apt here, or apt-get update failed (offline): a valid image built earlier from the same
        # kernel package still boots; its inputs just cannot be re-checked.
        if not force and (img := _newest_cached(name, kernel_package)) is not None:
            return img
        raise
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
            _build_into(out, Path(tmp), name, packages, digest, progress, kernel_package=kernel_package)
            store.publish(out, final)
    img = store.load(final)
    if img is None:
        raise ImageError(
            f"image {name} at {final} failed verification right after building", hint=f"check free space in {root}"
        )
    _report(progress, "done", 1.0)
    return img


def _newest_cached(name: str, kernel_package: str) -> Image | None:
    for img in store.list_images(image_dir()):  # newest first per name
        if img.name == name and store.load_inputs(img.kernel.parent).get("kernel_package") == kernel_package:
            return img
    return None


def prune_images(keep: int = 1) -> list[Path]:
    """Delete what the cache no longer needs; returns what was removed.

    Kept: the newest *keep* valid entries per image name, and the .debs those entries were built from.
    Removed: older entries, entries that fail verification, leftovers of killed builds, other .debs.
    """
    root = image_dir()
    removed: list[Path] = []
    with store.locked(root):
        store.clean_stale(root)
        kept: dict[str, int] = {}
        needed_debs: set[str] | None = set()
        valid = {img.kernel.parent: img for img in store.list_images(root)}
        for d in sorted(store.entries(root), key=lambda d: -(valid[d].built_at if d in valid else 0.0)):
            img = valid.get(d)
            if img is not None and kept.get(img.name, 0) < keep:
                kept[img.name] = kept.get(img.name, 0) + 1
                debs = store.load_inputs(d).get("debs")
                if isinstance(debs, list) and needed_debs is not None:
                    needed_debs.update(str(x) for x in debs)
                else:
                    needed_debs = None  # an entry from before debs were recorded: keep every .deb
                continue
            store.discard(d)
            removed.append(d)
        if needed_debs is not None:
            for deb in sorted((root / "debs").glob("*.deb")):
                if deb.name not in needed_debs:
                    deb.unlink()
                    removed.append(deb)
    return removed


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
