"""The native VMM vs ``qemu-system-x86_64 -enable-kvm -M microvm`` on the same small test kernel.

Both boot tests/guests' PVH kernel (QEMU's microvm boots ELF kernels through PVH too) with 64 MiB and one
vCPU, the serial console on a pipe. The kernel prints its report, then writes port 0x80 N times between
"bench: start" and "bench: done" (each write is one exit to the VMM and back), then halts. Measured per run:

- time to first UART byte: from starting the process to the first byte on its stdout;
- PIO exit round trips per second: N / (time between the two bench lines), seen from the host;
- private host memory: USS of the halted VMM process, and USS beyond guest RAM (the guest RAM mapping's own
  private pages subtracted, from /proc/PID/smaps); PSS and RSS beside them. USS counts a page only when no
  other process maps it: QEMU's binary and libraries stop counting while other QEMUs run on the host, the
  interpreter's while other Pythons do, so compare the two within one run and read PSS too.

Runs alternate (native, QEMU, native, ...) so drift hits both. Medians and ratios are printed, JSON goes to
bench/results/native_boot.json.

The nested part: inside one L1 guest of the nested-virtualization harness (QEMU TCG with emulated AMD-V),
Debian's unmodified cloud kernel boots to its init marker on virtkit's native engine and on QEMU with KVM,
alternating, timed with the host's clock (the same measurement as bench/nested_boot.py).

    python bench/native_boot.py [--runs 5] [--exits 20000] [--nested-runs 3 (0 skips it)]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))  # tests.support: the nested harness
sys.path.insert(0, str(ROOT / "tests" / "guests"))

import guestkernels  # noqa: E402

from virtkit.host.probe import probe  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MEMORY_MIB = 64


def native_command(kernel: Path, cmdline: str) -> list[str]:
    vmm = {"kernel": str(kernel), "cmdline": cmdline, "memory_mib": MEMORY_MIB}
    return [sys.executable, "-m", "virtkit.engines.native_main", json.dumps({"vmm": vmm, "console": "stdio"})]


def qemu_command(kernel: Path, cmdline: str) -> list[str]:
    # -cpu qemu64: KVM-PVM refuses MSRs that -cpu host/max would set; microvm has no i8042, so no reset
    return ["qemu-system-x86_64", "-enable-kvm", "-M", "microvm", "-cpu", "qemu64", "-m", str(MEMORY_MIB),
            "-smp", "1", "-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio",
            "-kernel", str(kernel), "-append", cmdline, "-no-reboot"]  # fmt: skip


def guest_ram_private_kib(pid: int) -> int:
    """Private pages of the mapping that holds guest RAM (the largest anonymous mapping >= guest RAM)."""
    best_size, best_private, size, private = 0, 0, 0, 0
    in_candidate = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5:  # a new mapping header
            if in_candidate and size > best_size:
                best_size, best_private = size, private
            path = fields[5] if len(fields) > 5 else ""
            in_candidate, size, private = path in ("", "[anon]") or path.startswith("/memfd:"), 0, 0
        elif fields[0] == "Size:":
            size = int(fields[1])
        elif fields[0] in ("Private_Clean:", "Private_Dirty:"):
            private += int(fields[1])
    if in_candidate and size > best_size:
        best_size, best_private = size, private
    return best_private if best_size >= MEMORY_MIB * 1024 else 0


def one_run(command: list[str], exits: int, env: dict[str, str]) -> dict[str, float]:
    t0 = time.monotonic()
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=env)  # fmt: skip
    assert proc.stdout is not None
    out = b""
    first = start = done = None
    try:
        while b"then: " not in out:
            chunk = os.read(proc.stdout.fileno(), 65536)
            now = time.monotonic()
            if not chunk:
                raise RuntimeError(f"{command[0]} ended early:\n{out.decode(errors='replace')}")
            if first is None:
                first = now
            out += chunk
            if start is None and b"bench: start\n" in out:
                start = now
            if done is None and b"bench: done\n" in out:
                done = now
        time.sleep(0.2)  # let the halted guest settle before sampling memory
        info = psutil.Process(proc.pid).memory_full_info()
        guest_kib = guest_ram_private_kib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert first is not None and start is not None and done is not None
    return {
        "first_byte_s": first - t0,
        "pio_exits_per_s": exits / (done - start),
        "uss_mib": info.uss / (1 << 20),
        "uss_beyond_guest_ram_mib": (info.uss - guest_kib * 1024) / (1 << 20),
        "pss_mib": info.pss / (1 << 20),
        "rss_mib": info.rss / (1 << 20),
    }


def nested_linux_boot(runs: int) -> dict[str, object]:
    """Unmodified Linux to its init marker inside one L1: native engine vs QEMU with KVM (host clock)."""
    from tests.support import nested

    print(f"nested: booting Debian's cloud kernel {runs}x per engine inside one L1 ...", file=sys.stderr, flush=True)
    times = nested.measure_l2_boots(["native", "qemu"], runs, timeout=900.0)
    med = {e: statistics.median(ts) for e, ts in times.items()}
    ratio = med["native"] / med["qemu"]
    print(f"{'linux boot in L1 (s)':28} {med['native']:12.3f} {med['qemu']:14.3f} {ratio:12.2f}   (qemu: -enable-kvm)")
    return {"seconds": times, "median_s": med, "ratio_native_over_qemu_kvm": ratio}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--exits", type=int, default=20000)
    parser.add_argument("--nested-runs", type=int, default=3, help="Linux boots per engine inside L1 (0: skip)")
    args = parser.parse_args()
    if shutil.which("qemu-system-x86_64") is None:
        print("qemu-system-x86_64 is needed for the comparison (apt-get install qemu-system-x86)", file=sys.stderr)
        return 2
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("/dev/kvm is needed (both sides run on KVM)", file=sys.stderr)
        return 2
    kernel = guestkernels.build()["pvh"]
    cmdline = f"console=ttyS0 bench={args.exits}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    runs: dict[str, list[dict[str, float]]] = {"native": [], "qemu": []}
    for i in range(args.runs):
        runs["native"].append(one_run(native_command(kernel, cmdline), args.exits, env))
        runs["qemu"].append(one_run(qemu_command(kernel, cmdline), args.exits, env))
        print(f"run {i + 1}/{args.runs}: native {runs['native'][-1]}  qemu {runs['qemu'][-1]}", file=sys.stderr)
    medians = {engine: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for engine, rs in runs.items()}
    ratios = {key: medians["native"][key] / medians["qemu"][key] for key in medians["native"]}
    report = probe()
    doc = {
        "benchmark": "native_boot",
        "kernel": "tests/guests vmlinux-pvh (PVH entry)",
        "memory_mib": MEMORY_MIB,
        "exits_per_run": args.exits,
        "runs": args.runs,
        "host": {
            "cpu": report.cpu_model,
            "kvm_modules": sorted(report.kvm_modules),
            "python": platform.python_version(),
            "qemu": report.qemu_version,
        },
        "native": medians["native"],
        "qemu_microvm": medians["qemu"],
        "ratio_native_over_qemu": ratios,
        "samples": runs,
    }
    print(f"{'metric':28} {'native':>12} {'qemu microvm':>14} {'native/qemu':>12}")
    for key in medians["native"]:
        print(f"{key:28} {medians['native'][key]:12.3f} {medians['qemu'][key]:14.3f} {ratios[key]:12.2f}")
    if args.nested_runs > 0:
        doc["nested_linux_boot"] = nested_linux_boot(args.nested_runs)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "native_boot.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {RESULTS / 'native_boot.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
