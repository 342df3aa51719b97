"""Run inside the nested L1 by test_native_agent.py (and bench/native_virtio.py): boot the default image on
the native engine with 2 vCPUs, talk to its guest agent, shut it down through the agent; print one JSON line.

    python l1_native_agent.py KERNEL INITRD [--engine native|qemu] [--pings N] [--vcpus N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from virtkit.oneshot import spec_for

MARKER = "virtkit-l1-result: "


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("kernel", type=Path)
    p.add_argument("initrd", type=Path)
    p.add_argument("--engine", default="native")
    p.add_argument("--pings", type=int, default=20)
    p.add_argument("--vcpus", type=int, default=2)
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
    print(MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
