"""Run inside the nested L1 by test_native_agent.py (and bench/native_virtio.py): boot the default image on
the native engine with 2 vCPUs, talk to its guest agent, shut it down through the agent; print one JSON line.

    python l1_native_agent.py KERNEL INITRD [--engine native|qemu] [--pings N] [--vcpus N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from virtkit.oneshot import spec_for

MARKER = "virtkit-l1-result: "


def time_hwrng(agent: Any, nbytes: int) -> dict[str, float]:
    """Virtqueue requests per second through virtio-rng: Linux's hw_random asks for 64 bytes a request
    here (rng_buffer_size() on x86), timed with the host clock around the exec minus an empty exec."""
    t = time.monotonic()
    agent.exec(["true"], timeout=60)
    baseline = time.monotonic() - t
    t = time.monotonic()
    r = agent.exec(["sh", "-c", f"head -c {nbytes} /dev/hwrng | wc -c"], timeout=600)
    elapsed = time.monotonic() - t
    got = int(r.stdout.decode().strip() or 0)
    seconds = max(elapsed - baseline, 1e-6)
    return {"bytes": got, "seconds": round(seconds, 4), "requests_per_s": round(got / 64 / seconds, 1)}


def run_cli(engine: str, vcpus: int) -> dict[str, object]:
    """`virtkit run` as a user types it. L1's / is read-only: a writable VIRTKIT_HOME borrows the images."""
    from virtkit.config import defaults

    home = Path(tempfile.mkdtemp(prefix="vkhome-"))
    (home / "images").symlink_to(defaults.image_dir())
    cmd = "uname -r; grep -c ^processor /proc/cpuinfo; exit 3"
    argv = [sys.executable, "-m", "virtkit", "run", "--engine", engine, "--vcpus", str(vcpus), "--", "sh", "-c", cmd]
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=600, env={**os.environ, "VIRTKIT_HOME": str(home)}
    )
    return {"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr[-2000:]}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("kernel", type=Path)
    p.add_argument("initrd", type=Path)
    p.add_argument("--engine", default="native")
    p.add_argument("--pings", type=int, default=20)
    p.add_argument("--vcpus", type=int, default=2)
    p.add_argument("--rng-bytes", type=int, default=0, help="time reading this much from /dev/hwrng")
    p.add_argument("--cli", action="store_true", help="also run `virtkit run --engine ENGINE -- ...` once")
    args = p.parse_args()
    if args.engine == "native":
        from virtkit.engines.native import NativeEngine

        engine: object = NativeEngine()
    else:
        from virtkit.engines.qemu import QemuEngine

        engine = QemuEngine()
    spec = spec_for(args.kernel, args.initrd, name=f"l2-{args.engine}", vcpus=args.vcpus, memory_mib=256)
    result: dict[str, object] = {"engine": args.engine}
    workdir = Path(tempfile.mkdtemp(prefix="l2-"))
    t0 = time.monotonic()
    machine = engine.start(spec, workdir)  # type: ignore[attr-defined]
    try:
        machine.wait_ready(300)
        result["boot_to_agent_ready_s"] = round(time.monotonic() - t0, 3)
        with machine.agent() as agent:
            agent.sync()
            times = []
            for _ in range(args.pings):
                t = time.monotonic()
                agent.ping()
                times.append(time.monotonic() - t)
            result["ping_s"] = times
            for key, argv in {
                "uname": ["uname", "-r"],
                "nproc": ["grep", "-c", "^processor", "/proc/cpuinfo"],
                "rng_current": ["cat", "/sys/class/misc/hw_random/rng_current"],
                "hwrng_bytes": ["sh", "-c", "head -c 32 /dev/hwrng | wc -c"],
                "exit3": ["sh", "-c", "exit 3"],
            }.items():
                r = agent.exec(argv, timeout=60)
                result[key] = {"exitcode": r.exitcode, "out": r.stdout.decode().strip(), "err": r.stderr.decode()}
            if args.rng_bytes:
                result["rng"] = time_hwrng(agent, args.rng_bytes)
            agent.shutdown()
        t = time.monotonic()
        state = machine.wait(60)
        result["shutdown_s"] = round(time.monotonic() - t, 3)
        result["final_state"] = str(state)
    except Exception as e:  # report, then clean up
        result["error"] = f"{type(e).__name__}: {e}"
        result["console_tail"] = machine.console()[-3000:]
    finally:
        if machine.pid is not None:
            machine.destroy()
        vmm_log = workdir / "vmm.log"
        if vmm_log.exists():
            result["vmm_log_tail"] = vmm_log.read_text(errors="replace")[-1500:]
    if args.cli:
        result["cli"] = run_cli(args.engine, args.vcpus)
    print(MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
