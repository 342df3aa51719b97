"""Boot time: a hand-written qemu-system-x86_64 command vs virtkit's QEMU engine, same kernel and initramfs.

Both boot the default image's kernel and initramfs with the same machine, memory and devices; time is
measured from process start to the marker the guest's init prints on the serial console once its agent runs
(`virtkit: ready`). Runs alternate (plain, virtkit, plain, ...) so drift hits both. Prints both medians and
the ratio, writes JSON to bench/results/boot.json. Target: virtkit's overhead <= 5 %.

    python bench/boot.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from virtkit.engines.qemu import QemuEngine
from virtkit.images import build_image
from virtkit.oneshot import spec_for

MARKER = b"virtkit: ready"
RESULTS = Path(__file__).resolve().parent / "results"


def plain_qemu(kernel: Path, initrd: Path, workdir: Path, timeout: float) -> float:
    """What a person would type: TCG, 256 MiB, serial on stdout, the agent port on a socket."""
    argv = [
        "qemu-system-x86_64", "-machine", "pc,accel=tcg", "-cpu", "qemu64", "-m", "256M", "-nodefaults",
        "-display", "none", "-serial", "stdio", "-kernel", str(kernel), "-initrd", str(initrd),
        "-append", "console=ttyS0 quiet panic=-1", "-device", "virtio-rng-pci",
        "-device", "virtio-serial-pci,id=vser0",
        "-chardev", f"socket,id=qga0,path={workdir / 'qga.sock'},server=on,wait=off",
        "-device", "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0",
    ]  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    seen = b""
    try:
        while MARKER not in seen:
            chunk = proc.stdout.read1(4096)
            if not chunk or time.monotonic() - t0 > timeout:
                raise RuntimeError("plain QEMU never printed the marker")
            seen = seen[-64:] + chunk
        return time.monotonic() - t0
    finally:
        proc.kill()
        proc.wait()


def virtkit_engine(kernel: Path, initrd: Path, workdir: Path, timeout: float) -> float:
    """Through the engine, reading the console as a user attached to it would (its socket, blocking), so
    neither side spends CPU polling while the guest boots."""
    spec = spec_for(kernel, initrd, name="bench", cmdline="console=ttyS0 quiet panic=-1")
    # A fresh run directory each time: the console log appends across starts of one machine.
    vmdir = Path(tempfile.mkdtemp(prefix="vm-", dir=workdir))
    t0 = time.monotonic()
    m = QemuEngine(accel="tcg").start(spec, vmdir, die_with_parent=True)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(m.console_socket))
            sock.settimeout(timeout)
            seen = m.console().encode()[-64:]  # anything printed before we attached
            while MARKER not in seen:
                chunk = sock.recv(4096)
                if not chunk:
                    raise RuntimeError("virtkit's engine closed the console before the marker")
                seen = seen[-64:] + chunk
        return time.monotonic() - t0
    finally:
        m.destroy()
        shutil.rmtree(vmdir, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()
    if shutil.which("qemu-system-x86_64") is None:
        print("qemu-system-x86_64 not found: apt-get install qemu-system-x86", file=sys.stderr)
        return 2
    img = build_image("tiny")
    times: dict[str, list[float]] = {"plain": [], "virtkit": []}
    with tempfile.TemporaryDirectory(prefix="virtkit-bench-") as tmp:
        for i in range(args.runs):
            for name, fn in (("plain", plain_qemu), ("virtkit", virtkit_engine)):
                t = fn(img.kernel, img.initrd, Path(tmp), args.timeout)
                times[name].append(t)
                print(f"run {i + 1}/{args.runs}  {name:<8} {t:6.3f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["virtkit"] / med["plain"]
    print(f"\n{'':<8} {'median':>8}")
    print(f"{'plain':<8} {med['plain']:7.3f}s")
    print(f"{'virtkit':<8} {med['virtkit']:7.3f}s")
    print(f"ratio virtkit/plain: {ratio:.3f} (overhead {100 * (ratio - 1):+.1f} %, target <= +5 %)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "boot-to-ready",
        "marker": MARKER.decode(),
        "kernel_version": img.kernel_version,
        "runs": args.runs,
        "seconds": times,
        "median": med,
        "ratio_virtkit_over_plain": ratio,
        "host": {"cpu_count": os.cpu_count(), "python": platform.python_version()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (RESULTS / "boot.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {RESULTS / 'boot.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
