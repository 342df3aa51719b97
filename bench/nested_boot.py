"""Unmodified Linux boot inside the nested L1: QEMU-KVM vs virtkit's native engine, on the same L1.

Both engines boot Debian's cloud kernel with the same busybox initramfs and cmdline (tests.support.nested
L2 payload) on L1's /dev/kvm (AMD-V emulated by QEMU TCG on this host). Time runs from starting the engine's
command in L1 to the L2 init marker on the serial console, read with the host's clock (L2's own clock freezes
and jumps under this nesting). Runs alternate (qemu, native, qemu, ...) in one L1 so drift hits both. Prints
both medians and the ratio, writes JSON to bench/results/nested_boot.json.

    python bench/nested_boot.py [--runs 3] [--pvh] [--engines qemu,native]

For other benchmarks: ``tests.support.nested.measure_l2_boot(engine, runs)`` (one engine) and
``measure_l2_boots(engines, runs)`` (several, one shared L1).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]  # ROOT: tests.support

from tests.support import nested  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--engines", default="qemu,native", help="comma-separated, from: qemu, native")
    p.add_argument("--pvh", action="store_true", help="boot the ELF vmlinux via PVH instead of the bzImage")
    p.add_argument("--timeout", type=float, default=900.0, help="for the whole L1 run, seconds")
    args = p.parse_args()
    engines = [e for e in args.engines.split(",") if e]
    if "native" in engines and importlib.util.find_spec("virtkit.engines.native_main") is None:
        print("nested_boot: virtkit.engines.native_main is not importable; use --engines qemu", file=sys.stderr)
        return 2
    l2 = nested.l2_artefacts()
    t0 = time.monotonic()
    times = nested.measure_l2_boots(engines, args.runs, timeout=args.timeout, pvh=args.pvh)
    wall = time.monotonic() - t0
    medians = {e: statistics.median(ts) for e, ts in times.items()}
    for e, ts in times.items():
        print(f"{e:>7}: median {medians[e]:6.2f} s  runs {', '.join(f'{t:.2f}' for t in ts)}")
    result: dict[str, object] = {
        "benchmark": "nested_boot",
        "what": "engine start in L1 -> L2 init marker, host clock",
        "kernel": l2.release,
        "boot": "pvh" if args.pvh else "bzImage",
        "runs": args.runs,
        "seconds": times,
        "median_s": medians,
        "l1_wall_s": round(wall, 2),
        "host": platform.node(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if {"qemu", "native"} <= medians.keys():
        ratio = medians["native"] / medians["qemu"]
        result["ratio_native_over_qemu"] = round(ratio, 3)
        print(f"  ratio: native / qemu = {ratio:.2f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "nested_boot.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
