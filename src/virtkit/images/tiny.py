"""The "tiny" image's recipe: which packages, which modules, and how the initramfs is laid out."""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from virtkit.errors import ImageError
from virtkit.images import elfdeps, kmod
from virtkit.images.cpio import Entry

AGENT_PACKAGE = "qemu-guest-agent"
BUSYBOX_PACKAGE = "busybox-static"
AGENT_BINARY = "usr/sbin/qemu-ga"
# virtio over PCI (QEMU) and MMIO (small VMMs), the devices virtkit attaches, and the ACPI power button
# with the evdev node busybox acpid listens on.
MODULES = ("virtio_pci", "virtio_mmio", "virtio_console", "virtio_blk", "virtio_net", "virtio_rng", "button", "evdev")
LIBDIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib")
GUEST_LIBDIR = "lib/x86_64-linux-gnu"

# Package data under images/guest/ -> (path in the guest, permissions).
GUEST_FILES = {
    "init": ("init", 0o755),
    "inittab": ("etc/inittab", 0o644),
    "virtkit-agent": ("sbin/virtkit-agent", 0o755),
    "console": ("sbin/virtkit-console", 0o755),
    "shutdown": ("sbin/shutdown", 0o755),
    "power-button": ("etc/acpi/PWRF/00000080", 0o755),
    "udhcpc.script": ("usr/share/udhcpc/default.script", 0o755),
    "profile": ("etc/profile", 0o644),
    "os-release": ("etc/os-release", 0o644),
}


def guest_files() -> dict[str, bytes]:
    """The shipped guest files by package-data name (part of the image digest)."""
    base = resources.files("virtkit.images") / "guest"
    return {name: (base / name).read_bytes() for name in sorted(GUEST_FILES)}


def find_kernel(root: Path) -> tuple[Path, str]:
    """The bzImage in an unpacked kernel package and its version (``boot/vmlinuz-<version>``)."""
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise ImageError(
            f"expected one boot/vmlinuz-* in the kernel package, found {len(kernels)}",
            hint="set --kernel-package to a Debian linux-image package",
        )
    version = kernels[0].name.removeprefix("vmlinuz-")
    if not (root / "lib" / "modules" / version).is_dir():
        raise ImageError(f"kernel {version} has no lib/modules/{version} in its package")
    return kernels[0], version


def busybox_applets(busybox: Path) -> list[str]:
    """Install paths of busybox's applets (``sbin/acpid``...), asked of the packaged binary itself."""
    try:
        out = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ImageError(
            f"cannot list busybox applets with {busybox}: {exc}",
            hint="build on an x86-64 host (the image's busybox runs on it)",
        ) from exc
    return [line.strip() for line in out.splitlines() if line.strip() and "/" in line]


def _file(path: str, src: Path) -> Entry:
    mode = src.stat().st_mode
    return Entry.file(path, src.read_bytes(), 0o755 if mode & stat.S_IXUSR else 0o644)


def entries(
    root: Path, kernel_version: str, modules: list[kmod.Module], libraries: list[elfdeps.Library]
) -> Iterator[Entry]:
    """Everything in the initramfs, from the unpacked packages under *root* and the guest files."""
    for d in ("proc", "sys", "dev", "run", "tmp", "root", "etc", "var", "mnt"):
        yield Entry.directory(d, 0o1777 if d == "tmp" else (0o700 if d == "root" else 0o755))
    yield Entry.symlink("var/run", "../run")
    yield Entry.symlink("var/tmp", "../tmp")
    # The kernel opens /dev/console for /init before anything can mount devtmpfs.
    yield Entry.chardev("dev/console", 5, 1)
    yield Entry.chardev("dev/null", 1, 3, 0o666)

    yield _file("bin/busybox", root / "bin" / "busybox")
    for applet in busybox_applets(root / "bin" / "busybox"):
        if applet != "bin/busybox" and applet != "linuxrc":
            depth = applet.count("/")
            yield Entry.symlink(applet, "../" * depth + "bin/busybox")

    yield _file("usr/sbin/qemu-ga", root / AGENT_BINARY)
    placed: dict[Path, str] = {}
    for lib in sorted(libraries, key=lambda lib: lib.soname.startswith("/")):
        if lib.soname.startswith("/"):  # the interpreter, at its absolute path
            target = placed.get(lib.source)
            path = lib.soname.lstrip("/")
            yield Entry.symlink(path, "/" + target) if target else _file(path, lib.source)
        else:
            path = f"{GUEST_LIBDIR}/{lib.soname}"
            placed[lib.source] = path
            yield Entry.file(path, lib.source.read_bytes(), 0o755)

    moddir = root / "lib" / "modules" / kernel_version
    for mod in modules:
        yield Entry.file(f"lib/modules/{kernel_version}/{mod.path}", (moddir / mod.path).read_bytes())
    yield Entry.file("etc/virtkit/modules", "".join(f"{m.path}\n" for m in modules).encode())

    for name, data in guest_files().items():
        path, perm = GUEST_FILES[name]
        yield Entry.file(path, data, perm)
    yield Entry.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    yield Entry.file("etc/group", b"root:x:0:\n")
    yield Entry.file("etc/hostname", b"virtkit\n")
