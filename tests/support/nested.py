"""Nested-virtualization harness: an L1 guest with a working hardware /dev/kvm, to boot unmodified Linux (L2).

Why: a KVM-PVM host's /dev/kvm runs only PVM-enabled kernels. QEMU's TCG emulates AMD-V (SVM with nested
paging) for a guest given ``-cpu EPYC``, so an L1 Linux loading kvm-amd gets a real-looking /dev/kvm on which
our native engine (or QEMU-KVM for comparison) can boot Debian's stock kernel.

L1 is Debian's generic kernel (the cloud flavour lacks 9p) with a busybox initramfs built here. Its
/init loads the virtio, 9p and kvm modules, mounts the host's own ``/`` read-only over 9p, adds proc, sys,
devtmpfs and tmpfs for /tmp and /run, chroots into it and runs one command. So the host's Python, venv,
checkout and QEMU are visible in L1 at the same paths and no root image is built. A second, writable 9p
share (a host temp dir) at :data:`L1_SHARE` carries the command in and its output, exit code and files out.
Every console line is time-stamped with the host clock as it arrives (L2's clock freezes and jumps under
this nesting).

Artefacts (L1 kernel + initramfs, L2 kernel + initramfs) are built once and cached content-addressed under
``<state_dir>/cache/nested/``; the verified .debs are shared with the image builder (``<image_dir>/debs``).

Entry points: :func:`run_in_l1`, :func:`l1_artefacts`, :func:`l2_artefacts` / :func:`l2_boot_files`,
:func:`l2_command`, :func:`boot_l2_in_l1` (+ :func:`l2_boots`), :func:`measure_l2_boots`, :func:`measure_l2_boot`.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import lzma
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from elftools.elf.elffile import ELFFile

import virtkit
from tests.support import bzimage, debs
from virtkit.arch.x86_64.pvh import has_pvh_entry
from virtkit.config.defaults import image_dir, state_dir
from virtkit.errors import EngineError, GuestTimeout, HostError, ImageError
from virtkit.images import apt, cpio, kmod
from virtkit.images.cpio import Entry

__all__ = [
    "L1_OUT",
    "L1_SHARE",
    "L2_CMDLINE",
    "L2_MARKER",
    "BootArtefacts",
    "ConsoleLine",
    "L1Result",
    "L1Timings",
    "L2Boot",
    "boot_l2_in_l1",
    "checkout_src",
    "l1_artefacts",
    "l2_artefacts",
    "l2_boot_files",
    "l2_boots",
    "l2_command",
    "measure_l2_boot",
    "measure_l2_boots",
    "run_in_l1",
]

# Bump when the layout or scripts of a built artefact change in a way the cache key does not see.
_BUILD_VERSION = "5"

L1_PACKAGE = "linux-image-amd64"
L2_PACKAGE = "linux-image-cloud-amd64"
# What L1's initramfs carries; _module_order() sorts them by each .ko's depends= and refuses a missing one.
L1_MODULES = (
    "virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
    "netfs", "fscache", "9pnet", "9pnet_virtio", "9p",
    "irqbypass", "kvm", "ccp", "kvm-amd",
)  # fmt: skip
L1_CMDLINE = "console=ttyS0 quiet loglevel=3 panic=-1 nokaslr mitigations=off"
# Where the writable host share appears inside L1; the command may write result files under L1_SHARE/out.
L1_SHARE = "/run/virtkit-l1"
L1_OUT = f"{L1_SHARE}/out"
L2_MARKER = "virtkit-l2: init reached"
# quiet: a verbose console costs ~40k port exits; reboot=t: a reboot triple-faults into a shutdown exit.
L2_CMDLINE = "console=ttyS0 quiet nokaslr mitigations=off reboot=t panic=-1"
_DEFAULT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "PYTHONDONTWRITEBYTECODE": "1",  # the host tree is read-only in L1
}

_L1_INIT = r"""#!/bin/busybox sh
B=/bin/busybox
fail() { echo "virtkit-l1: error: $*"; $B poweroff -f; }
$B mount -t devtmpfs dev /dev
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
for m in @MODULES@; do
  $B insmod /lib/modules/$m.ko || echo "virtkit-l1: warning: insmod $m failed"
done
R=/newroot
$B mkdir -p $R
# cache=loose: the host tree is read-only for L1's lifetime, so page-caching it is safe and much faster.
$B mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 hostroot $R \
  || fail "mounting the host root over 9p failed"
# Handles on the host's /tmp and /run before tmpfs hides them: paths listed in "binds" are put back below.
$B mkdir -p /host/tmp /host/run && $B mount --bind $R/tmp /host/tmp && $B mount --bind $R/run /host/run \
  || fail "binding the host's /tmp and /run failed"
$B mount -t proc proc $R/proc && $B mount -t sysfs sys $R/sys && $B mount -t devtmpfs dev $R/dev \
  && $B mount -t tmpfs -o mode=1777 tmp $R/tmp && $B mount -t tmpfs run $R/run \
  && $B mkdir -p $R/dev/shm && $B mount -t tmpfs shm $R/dev/shm \
  || fail "mounting proc/sys/dev/tmpfs in the new root failed"
$B mkdir -p $R@SHARE@
$B mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 hostshare $R@SHARE@ \
  || fail "mounting the writable share failed"
while read -r p; do
  $B mkdir -p "$R$p" && $B mount --bind "/host$p" "$R$p" || fail "binding the host's $p failed"
done < $R@SHARE@/binds
echo "virtkit-l1: ready $($B cut -d' ' -f1 /proc/uptime)"
$B chroot $R /bin/sh @SHARE@/cmd.sh </dev/null 2>&1 | $B tee $R@SHARE@/output
echo "virtkit-l1: exit $($B cat $R@SHARE@/rc 2>/dev/null || echo missing)"
$B umount $R@SHARE@
$B sync
$B poweroff -f
"""

_L2_INIT = r"""#!/bin/busybox sh
B=/bin/busybox
echo "@MARKER@"
$B uname -r
# reboot, not poweroff: without ACPI (the native engine's machine) Linux turns power-off into an endless halt;
# with reboot=t a reboot triple-faults, which ends the VM on either engine (QEMU -no-reboot, native --on-reset exit).
$B reboot -f
"""


# ----------------------------------------------------------------------------------------------- artefacts


@dataclass(frozen=True)
class BootArtefacts:
    """A kernel image, its initramfs and the kernel release, ready for -kernel/-initrd."""

    kernel: Path
    initrd: Path
    release: str
    vmlinux: Path | None = None  # the same kernel as an ELF with a PVH entry note, where it has one


def _cache_root() -> Path:
    return state_dir() / "cache"


def _busybox() -> Path:
    found = shutil.which("busybox")
    if found is None:
        raise HostError("busybox is not installed", hint="apt-get install busybox-static")
    path = Path(found).resolve()
    with path.open("rb") as f:
        if any(seg["p_type"] == "PT_INTERP" for seg in ELFFile(f).iter_segments()):
            raise HostError(f"{path} is dynamically linked", hint="apt-get install busybox-static")
    return path


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _decompress_module(path: str, data: bytes) -> bytes:
    if path.endswith(".ko"):
        return data
    if path.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.endswith(".ko.zst"):
        return subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True).stdout
    raise ImageError(f"unknown module compression: {path}")


def _depends(ko: bytes) -> tuple[str, ...]:
    """depends= of a module's .modinfo, as kernel names (- and _ alike)."""
    m = re.search(rb"(?:^|\0)depends=([^\0]*)\0", ko)
    return tuple(kmod.module_name(d.decode()) for d in m.group(1).split(b",") if d) if m else ()


def _module_order(modules: Mapping[str, bytes]) -> list[str]:
    """Load order for exactly these modules (insmod resolves nothing): each after its dependencies."""
    graph = {name: kmod.Module(name, f"{name}.ko", _depends(ko)) for name, ko in modules.items()}
    try:
        return [m.name for m in kmod.load_order(graph, sorted(modules))]
    except ImageError as e:
        raise ImageError(f"L1 modules: {e.message}", hint="add the module to L1_MODULES") from None


def _build(kind: str, key: Mapping[str, object], make: Callable[[Path], None]) -> Path:
    """Build into a temp dir beside the cache entry and rename it into place (atomic, race-safe)."""
    digest = _sha256(json.dumps(key, sort_keys=True).encode())[:20]
    root = _cache_root() / "nested"
    final = root / f"{kind}-{digest}"
    if (final / "meta.json").exists():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{kind}-"))
    try:
        make(tmp)
        (tmp / "meta.json").write_text(json.dumps(key, sort_keys=True, indent=1))
        os.chmod(tmp, 0o755)
        try:
            tmp.rename(final)
        except OSError:
            if not (final / "meta.json").exists():
                raise
        for stale in root.glob(f"{kind}-*"):  # older builds of this kind: bounded cache, newest wins
            if stale != final:
                shutil.rmtree(stale, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _base_entries(init: str, busybox: bytes) -> list[Entry]:
    return [
        Entry.directory("bin"),
        Entry.file("bin/busybox", busybox, 0o755),
        Entry.symlink("bin/sh", "busybox"),
        Entry.directory("dev"),
        # The kernel opens /dev/console for init's stdio before init can mount devtmpfs.
        Entry.chardev("dev/console", 5, 1),
        Entry.directory("proc"),
        Entry.directory("sys"),
        Entry.directory("tmp", 0o1777),
        Entry.file("init", init.encode(), 0o755),
    ]


def _resolve_uncached(package: str) -> list[apt.Package]:
    # A metapackage (linux-image-amd64) points at the versioned one (linux-image-6.1.0-57-amd64).
    images = [d for d in apt.depends(package) if d.startswith("linux-image-")]
    return apt.print_uris([images[0] if images else package])


@functools.cache
def _kernel_deb(package: str) -> tuple[str, str, Path]:
    """(name, version, .deb) of the kernel behind `package`; resolution memoised on apt's lists, the .deb
    verified against their SHA256 and shared with the image builder's cache."""
    memo = _cache_root() / "nested" / "resolved.json"
    [pkg] = apt.memoised(memo, f"{package}|{_BUILD_VERSION}", lambda: _resolve_uncached(package))
    [deb] = apt.download([pkg], image_dir() / "debs")
    return pkg.name, pkg.version, deb


def l1_artefacts() -> BootArtefacts:
    """L1: Debian's generic kernel (its vmlinux when PVH-bootable) and the 9p-chroot initramfs; cached."""
    name, version, deb = _kernel_deb(L1_PACKAGE)
    busybox = _busybox().read_bytes()
    wanted = sorted({kmod.module_name(m) for m in L1_MODULES})
    key = {"v": _BUILD_VERSION, "pkg": name, "version": version, "busybox": _sha256(busybox),
           "init": _sha256(_L1_INIT.encode()), "share": L1_SHARE, "modules": wanted}  # fmt: skip

    def make(out: Path) -> None:
        files = debs.extract(
            deb,
            lambda p: (
                p.startswith("boot/vmlinuz-")
                or (p.startswith("lib/modules/") and ".ko" in p and kmod.module_name(p) in wanted)
            ),
        )
        kernels = [p for p in files if p.startswith("boot/vmlinuz-")]
        if len(kernels) != 1:
            raise ImageError(f"{deb.name} holds {len(kernels)} kernels, expected one")
        mods = {p: d for p, d in files.items() if p.startswith("lib/")}
        modules = {kmod.module_name(p): _decompress_module(p, d) for p, d in mods.items()}
        missing = set(wanted) - modules.keys()
        if missing:
            raise ImageError(f"{deb.name} lacks modules {sorted(missing)}", hint=f"use {L1_PACKAGE}")
        order = _module_order(modules)
        init = _L1_INIT.replace("@MODULES@", " ".join(order)).replace("@SHARE@", L1_SHARE)
        entries = _base_entries(init, busybox)
        entries += [Entry.directory("lib"), Entry.directory("lib/modules")]
        entries += [Entry.file(f"lib/modules/{m}.ko", modules[m]) for m in order]
        bz = files[kernels[0]]
        (out / "vmlinuz").write_bytes(bz)
        elf = bzimage.vmlinux(bz)
        if has_pvh_entry(elf):  # PVH boot skips ~6 s of TCG-emulated decompression
            (out / "vmlinux").write_bytes(elf)
        (out / "initrd.cpio").write_bytes(cpio.archive(entries))
        (out / "release").write_text(kernels[0].removeprefix("boot/vmlinuz-"))

    d = _build("l1", key, make)
    vmlinux = d / "vmlinux" if (d / "vmlinux").exists() else None
    return BootArtefacts(vmlinux or d / "vmlinuz", d / "initrd.cpio", (d / "release").read_text(), vmlinux)


def l2_artefacts() -> BootArtefacts:
    """The L2 guest: Debian's cloud bzImage; its busybox /init prints L2_MARKER and `uname -r`, then reboots.

    The reboot ends the VM on both engines (see _L2_INIT). `vmlinux` is the unwrapped PVH-bootable ELF.
    """
    name, version, deb = _kernel_deb(L2_PACKAGE)
    busybox = _busybox().read_bytes()
    init = _L2_INIT.replace("@MARKER@", L2_MARKER)
    key = {"v": _BUILD_VERSION, "pkg": name, "version": version, "busybox": _sha256(busybox),
           "init": _sha256(init.encode())}  # fmt: skip

    def make(out: Path) -> None:
        files = debs.extract(deb, lambda p: p.startswith("boot/vmlinuz-"))
        if len(files) != 1:
            raise ImageError(f"{deb.name} holds {len(files)} kernels, expected one")
        [(path, kernel)] = files.items()
        (out / "vmlinuz").write_bytes(kernel)
        elf = bzimage.vmlinux(kernel)
        if has_pvh_entry(elf):
            (out / "vmlinux").write_bytes(elf)
        (out / "initrd.cpio").write_bytes(cpio.archive(_base_entries(init, busybox)))
        (out / "release").write_text(path.removeprefix("boot/vmlinuz-"))

    d = _build("l2", key, make)
    vmlinux = d / "vmlinux" if (d / "vmlinux").exists() else None
    return BootArtefacts(d / "vmlinuz", d / "initrd.cpio", (d / "release").read_text(), vmlinux)


def l2_boot_files() -> tuple[Path, Path]:
    """(bzImage, initrd) of the L2 guest."""
    a = l2_artefacts()
    return a.kernel, a.initrd


# ---------------------------------------------------------------------------------------------------- L1 run


@dataclass(frozen=True)
class ConsoleLine:
    t: float  # seconds since QEMU was started, host monotonic clock
    text: str


@dataclass(frozen=True)
class L1Timings:
    ready_s: float  # QEMU start -> L1 /init about to run the command (modules loaded, 9p mounted)
    command_s: float  # the command itself, as seen on the console
    total_s: float  # QEMU start -> QEMU exited


@dataclass(frozen=True)
class L1Result:
    returncode: int
    output: str  # the command's stdout and stderr, interleaved
    timings: L1Timings
    console: tuple[ConsoleLine, ...] = ()  # everything L1 printed, the command's output included
    files: Mapping[str, bytes] = field(default_factory=dict)  # what the command wrote under L1_OUT

    def lines_after(self, t: float) -> list[ConsoleLine]:
        return [c for c in self.console if c.t >= t]


def _qemu() -> str:
    found = shutil.which("qemu-system-x86_64")
    if found is None:
        raise HostError("qemu-system-x86_64 is not installed", hint="apt-get install qemu-system-x86")
    return found


def _cmd_script(argv: Sequence[str], env: Mapping[str, str], cwd: str) -> str:
    assigns = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    return (
        f"cd {shlex.quote(cwd)} || {{ echo 127 > {L1_SHARE}/rc; exit; }}\n"
        f"mkdir -p {L1_OUT}\n"
        f"env -i {assigns} {shlex.join(argv)}\n"
        f"echo $? > {L1_SHARE}/rc\n"
    )


def _l1_qemu_argv(art: BootArtefacts, share: Path, memory_mib: int, smp: int) -> list[str]:
    return [
        _qemu(), "-machine", "pc", "-accel", "tcg", "-cpu", "EPYC", "-smp", str(smp), "-m", str(memory_mib),
        "-nodefaults", "-display", "none", "-no-reboot",
        "-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
        "-kernel", str(art.kernel), "-initrd", str(art.initrd), "-append", L1_CMDLINE,
        "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        "-virtfs", f"local,path={share},mount_tag=hostshare,security_model=none,multidevs=remap",
    ]  # fmt: skip


def _binds(paths: Sequence[str | Path]) -> list[str]:
    """The directories among paths (a file counts as its directory) that lie under /tmp or /run, outermost only."""
    hidden = (Path("/tmp"), Path("/run"))
    dirs: set[Path] = set()
    for raw in paths:
        p = Path(raw).resolve()
        if not p.exists():
            continue
        d = p if p.is_dir() else p.parent
        if any(d != h and d.is_relative_to(h) for h in hidden):
            dirs.add(d)
    return sorted(str(d) for d in dirs if not any(o != d and d.is_relative_to(o) for o in dirs))


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the harness dies, so no L1 outlives a killed test run."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _tail(lines: Sequence[ConsoleLine], n: int = 25) -> str:
    return "\n".join(c.text for c in lines[-n:])


def _read_files(out: Path) -> dict[str, bytes]:
    if not out.is_dir():
        return {}
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def run_in_l1(
    argv: Sequence[str],
    *,
    timeout: float,
    memory_mib: int = 2048,
    env: Mapping[str, str] | None = None,
    cwd: str = "/",
    smp: int = 1,
    visible: Sequence[str | Path] = (),
) -> L1Result:
    """Boot L1 under QEMU TCG, run argv there (host / read-only, /tmp and /run writable), return its result.

    env is added to a small clean environment (PATH, HOME=/tmp, LANG, ...). L1's tmpfs on /tmp and /run
    hides the host's; `visible` names host paths there to keep (read-only), and this interpreter, the
    virtkit checkout and cwd are kept on their own. Raises GuestTimeout when the whole run exceeds `timeout`
    seconds and EngineError when L1 itself fails (not when the command does). QEMU is always killed and
    the temp dir removed.
    """
    if not argv:
        raise ValueError("run_in_l1 needs a command")
    art = l1_artefacts()
    tmp = Path(tempfile.mkdtemp(prefix="virtkit-l1-"))
    lines: list[ConsoleLine] = []
    proc: subprocess.Popen[bytes] | None = None
    reader: threading.Thread | None = None
    try:
        share = tmp / "share"
        share.mkdir()
        (share / "cmd.sh").write_text(_cmd_script(argv, {**_DEFAULT_ENV, **(env or {})}, cwd))
        binds = _binds([sys.prefix, sys.executable, checkout_src(), cwd, *visible])
        (share / "binds").write_text("".join(f"{b}\n" for b in binds))
        stderr_path = tmp / "qemu.stderr"
        with stderr_path.open("wb") as stderr:
            t0 = time.monotonic()
            proc = subprocess.Popen(
                _l1_qemu_argv(art, share, memory_mib, smp),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, preexec_fn=_die_with_parent,
            )  # fmt: skip

        def read(stream: object) -> None:
            for raw in stream:  # type: ignore[attr-defined]
                lines.append(ConsoleLine(time.monotonic() - t0, raw.decode(errors="replace").rstrip("\r\n")))

        reader = threading.Thread(target=read, args=(proc.stdout,), daemon=True)
        reader.start()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise GuestTimeout(
                f"L1 run of {shlex.join(argv)} did not finish within {timeout:.0f} s",
                console_tail=_tail(lines),
                hint=f"raise the timeout if L1 was merely slow; its console ended with:\n{_tail(lines, 15)}",
            ) from None  # fmt: skip
        total = time.monotonic() - t0
        reader.join(timeout=5)
        errors = [c.text for c in lines if c.text.startswith("virtkit-l1: error")]
        rc_file = share / "rc"
        if errors or not rc_file.exists():
            qemu_err = stderr_path.read_text(errors="replace").strip()[-500:]
            raise EngineError(
                errors[0] if errors else f"L1 ended (QEMU exit {proc.returncode}) without the command's exit",
                hint=f"console tail:\n{_tail(lines)}\nqemu stderr: {qemu_err}",
            )
        rc_text = rc_file.read_text().strip()
        ready = next((c.t for c in lines if c.text.startswith("virtkit-l1: ready")), total)
        done = next((c.t for c in reversed(lines) if c.text.startswith("virtkit-l1: exit")), total)
        out_file = share / "output"
        output = out_file.read_bytes().decode(errors="replace") if out_file.exists() else ""
        return L1Result(
            returncode=int(rc_text) if rc_text.lstrip("-").isdigit() else -1,
            output=output,
            timings=L1Timings(ready_s=ready, command_s=done - ready, total_s=total),
            console=tuple(lines),
            files=_read_files(share / "out"),
        )
    finally:
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if reader is not None:
            reader.join(timeout=5)
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ L2 boots


def l2_command(
    engine: str, art: BootArtefacts, *, memory_mib: int = 256, cmdline: str = L2_CMDLINE, pvh: bool = False
) -> list[str]:
    """The command line (run inside L1) that boots the L2 guest on `engine` ('qemu' or 'native').

    pvh: boot the unwrapped ELF vmlinux through its PVH entry instead of the bzImage (both engines can).
    """
    kernel = art.kernel
    if pvh:
        if art.vmlinux is None:
            raise ImageError(f"kernel {art.release} has no PVH-bootable vmlinux", hint="boot the bzImage")
        kernel = art.vmlinux
    if engine == "qemu":
        return [
            _qemu(), "-enable-kvm", "-cpu", "host", "-M", "pc", "-m", str(memory_mib),
            "-nodefaults", "-display", "none", "-no-reboot", "-serial", "stdio",
            "-kernel", str(kernel), "-initrd", str(art.initrd), "-append", cmdline,
        ]  # fmt: skip
    if engine == "native":
        # the VMM's one JSON document, given inline (the command runs through a shell inside L1)
        vmm = {"kernel": str(kernel), "initrd": str(art.initrd), "cmdline": cmdline, "memory_mib": memory_mib,
               "on_reset": "exit"}  # fmt: skip
        return [sys.executable, "-m", "virtkit.engines.native_main", json.dumps({"vmm": vmm})]
    raise ValueError(f"unknown engine {engine!r} (use 'qemu' or 'native')")


def checkout_src() -> Path:
    """The src/ directory this virtkit was imported from (visible at the same path inside L1)."""
    return Path(virtkit.__file__).resolve().parent.parent


@dataclass(frozen=True)
class L2Boot:
    engine: str
    run: int
    seconds: float | None  # start of the engine command -> L2_MARKER on the console; None: never reached
    returncode: int | None
    output: str  # the console lines of this boot


def boot_l2_in_l1(
    engines: Sequence[str],
    runs: int,
    *,
    timeout: float = 600.0,
    memory_mib: int = 256,
    pythonpath: Path | None = None,
    pvh: bool = False,
) -> tuple[list[L2Boot], L1Result]:
    """Boot L2 `runs` times on each engine (interleaved) inside one L1; times from the host clock.

    pythonpath: the virtkit src/ the native engine runs from in L1 (default: the one imported here).
    """
    art = l2_artefacts()
    script = ["set -u"]
    for i in range(runs):
        for engine in engines:
            cmd = shlex.join(l2_command(engine, art, memory_mib=memory_mib, pvh=pvh))
            script += [
                f"echo 'virtkit-bench: start {engine} {i}'",
                f"{cmd} 2>&1",
                f'echo "virtkit-bench: end {engine} {i} rc=$?"',
            ]
    src = pythonpath or checkout_src()
    res = run_in_l1(
        ["/bin/sh", "-c", "\n".join(script)],
        timeout=timeout,
        env={"PYTHONPATH": str(src)},
        visible=[src, art.initrd],
    )
    return l2_boots(res.console), res


_BENCH_LINE = re.compile(r"virtkit-bench: (start|end) (\S+) (\d+)(?: rc=(-?\d+))?")


def l2_boots(console: Sequence[ConsoleLine]) -> list[L2Boot]:
    """Cut L1's console into the boots between `virtkit-bench: start/end` lines and time each to L2_MARKER."""
    boots: list[L2Boot] = []
    current: tuple[str, int, float, int] | None = None  # engine, run, start time, first console index
    for idx, line in enumerate(console):
        m = _BENCH_LINE.fullmatch(line.text.strip())
        if not m:
            continue
        if m.group(1) == "start":
            current = (m.group(2), int(m.group(3)), line.t, idx + 1)
            continue
        if current is None or current[:2] != (m.group(2), int(m.group(3))):
            continue
        engine, run, t_start, first = current
        own = console[first:idx]
        marker = next((c.t for c in own if c.text.strip() == L2_MARKER), None)
        rc = int(m.group(4)) if m.group(4) is not None else None
        boots.append(L2Boot(engine, run, None if marker is None else marker - t_start, rc,
                            "\n".join(c.text for c in own)))  # fmt: skip
        current = None
    return boots


def measure_l2_boots(
    engines: Sequence[str],
    runs: int,
    *,
    timeout: float = 600.0,
    memory_mib: int = 256,
    pythonpath: Path | None = None,
    pvh: bool = False,
) -> dict[str, list[float]]:
    """Seconds from starting each engine's command to L2_MARKER, per engine, measured on one shared L1."""
    boots, res = boot_l2_in_l1(engines, runs, timeout=timeout, memory_mib=memory_mib, pythonpath=pythonpath, pvh=pvh)
    times: dict[str, list[float]] = {e: [] for e in engines}
    for b in boots:
        if b.seconds is None:
            raise EngineError(
                f"L2 on engine {b.engine} (run {b.run}) never printed {L2_MARKER!r} (exit {b.returncode})",
                hint=f"its output:\n{b.output[-2000:]}",
            )
        times[b.engine].append(b.seconds)
    for engine, ts in times.items():
        if len(ts) != runs:
            raise EngineError(f"{engine}: {len(ts)} of {runs} L2 boots completed", hint=_tail(res.console))
    return times


def measure_l2_boot(engine: str, runs: int, *, timeout: float = 600.0, pvh: bool = False) -> list[float]:
    """Seconds (host clock) from starting `engine` in L1 to the L2 init marker, for each of `runs` boots."""
    return measure_l2_boots([engine], runs, timeout=timeout, pvh=pvh)[engine]
