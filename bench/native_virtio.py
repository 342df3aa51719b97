"""virtio on the native engine vs QEMU-KVM, both inside the nested L1, same Debian cloud kernel and default
image: boot to agent-ready, guest-agent round trip (guest-ping) and virtqueue requests per second through
virtio-rng (the guest reads /dev/hwrng; 64 bytes a request). Also the native virtio-rng device's own rate
with a test kernel on this host's /dev/kvm (KVM-PVM emulates the test kernel, so that one has no QEMU peer).

    python bench/native_virtio.py [--runs 1] [--rng-bytes 65536] [--skip-nested]

Prints medians and native/QEMU ratios, writes JSON to bench/results/native_virtio.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "tests" / "guests")]  # ROOT: tests.support

from tests.support import nested  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
L1_SCRIPT = ROOT / "tests" / "nested" / "l1_native_agent.py"
MARKER = "virtkit-l1-result: "


def nested_runs(runs: int, rng_bytes: int, pings: int) -> list[dict[str, object]]:
    from virtkit.images import build_image

    image = build_image("tiny")
    src = nested.checkout_src()
    lines = []
    for _ in range(runs):
        for engine in ("qemu", "native"):  # alternate, so drift in L1 hits both
            argv = [sys.executable, str(L1_SCRIPT), str(image.kernel), str(image.initrd), "--engine", engine,
                    "--pings", str(pings), "--rng-bytes", str(rng_bytes)]  # fmt: skip
            lines.append(shlex.join(argv))
    res = nested.run_in_l1(
        ["/bin/sh", "-c", "\n".join(lines)],
        timeout=600 + 300 * runs,
        env={"PYTHONPATH": str(src)},
        visible=[src, L1_SCRIPT.parent, image.kernel, image.initrd],
    )
    found = [json.loads(ln.removeprefix(MARKER)) for ln in res.output.splitlines() if ln.startswith(MARKER)]
    if len(found) != 2 * runs:
        raise SystemExit(f"native_virtio: {len(found)} of {2 * runs} L2 runs reported:\n{res.output[-4000:]}")
    return found


def local_rng_rate(requests: int) -> dict[str, float]:
    """The test kernel's rngbench: N virtio-rng requests (one notify and one MSI-X each) on /dev/kvm."""
    import guestkernels

    from virtkit.hypervisor.kvm import Kvm
    from virtkit.machine.config import VmmConfig
    from virtkit.machine.console import ConsoleSink
    from virtkit.machine.runner import Runner

    kernel = guestkernels.build()["bzimage"]
    sink = ConsoleSink()
    marks: dict[str, float] = {}
    text = bytearray()

    def listen(data: bytes) -> None:
        text.extend(data)
        for mark in (b"rngbench: start", b"rngbench: done"):
            if mark in text and mark.decode() not in marks:
                marks[mark.decode()] = time.monotonic()

    sink.add_listener(listen)
    kvm = Kvm()
    runner = Runner(VmmConfig(kernel, None, f"console=ttyS0 rngbench={requests} reset", 64, on_reset="exit"),
                    lambda: kvm, sink)  # fmt: skip
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    thread.join(300)
    if len(marks) != 2:
        raise SystemExit(f"native_virtio: the rngbench kernel did not finish:\n{text.decode(errors='replace')}")
    seconds = marks["rngbench: done"] - marks["rngbench: start"]
    return {"requests": requests, "seconds": round(seconds, 4), "requests_per_s": round(requests / seconds, 1)}


def median(results: list[dict[str, object]], engine: str, key: str) -> float:
    values: list[float] = []
    for r in results:
        if r["engine"] != engine:
            continue
        if "error" in r:
            raise SystemExit(f"native_virtio: {engine} failed in L2: {r['error']}\n{r.get('console_tail', '')}")
        v = r[key]
        if key == "ping_s":
            values.append(statistics.median(v[1:] if len(v) > 1 else v))  # type: ignore[arg-type]
        elif key == "rng":
            values.append(float(v["requests_per_s"]))  # type: ignore[index]
        else:
            values.append(float(v))  # type: ignore[arg-type]
    return statistics.median(values)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--pings", type=int, default=20)
    p.add_argument("--rng-bytes", type=int, default=65536)
    p.add_argument("--local-requests", type=int, default=2000)
    p.add_argument("--skip-nested", action="store_true")
    args = p.parse_args()
    result: dict[str, object] = {
        "benchmark": "native_virtio",
        "host": platform.node(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    local = local_rng_rate(args.local_requests)
    result["local_test_kernel_rng"] = local
    print(f"test kernel on local /dev/kvm (native only): {local['requests_per_s']:.0f} virtio-rng requests/s")
    if not args.skip_nested:
        runs = nested_runs(args.runs, args.rng_bytes, args.pings)
        result["nested_runs"] = runs
        table = {}
        for key, label, unit in (
            ("boot_to_agent_ready_s", "boot to agent-ready", "s"),
            ("ping_s", "guest-ping round trip", "s"),
            ("rng", "virtio-rng requests/s", "/s"),
        ):
            q, n = median(runs, "qemu", key), median(runs, "native", key)
            table[key] = {"qemu": q, "native": n, "ratio_native_over_qemu": round(n / q, 3)}
            print(f"{label:>24}: qemu {q:10.4f} {unit}  native {n:10.4f} {unit}  native/qemu {n / q:6.2f}")
        result["medians"] = table
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "native_virtio.json"
    if args.skip_nested and out.exists():  # keep the last nested numbers beside the new local ones
        previous = json.loads(out.read_text())
        for key in ("nested_runs", "medians", "nested_date"):
            if key in previous:
                result[key] = previous[key]
    elif not args.skip_nested:
        result["nested_date"] = result["date"]
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
