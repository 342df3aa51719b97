"""The virtio state-machine fuzzer (tests/support/virtio_fuzz.py) at volume: protocol deviations against
virtio-rng and virtio-console behind the virtio-pci transport, over test memory, plus a host thread feeding
console input while the driver resets the device over and over.

    python bench/fuzz.py [--inputs 1000000] [--seed 1] [--targets rng,console] [--race-seconds 10]

``--inputs`` is per target; one input is one protocol step (a status write, a queue set-up, a flood of
chains and a notify, host input...). Reports inputs/s per target, the worst single step, steps over 1 s
(hangs) and exceptions that escaped the device (both must be 0). Prints a table, writes JSON to
bench/results/fuzz.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.support.virtio_fuzz import SLOW_S, Fuzzer, race_input_with_resets  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def run_target(target: str, inputs: int, seed: int) -> dict[str, object]:
    fuzzer = Fuzzer(target, seed)
    started = time.perf_counter()
    stats = fuzzer.run(inputs)
    elapsed = time.perf_counter() - started
    return {
        "target": target,
        "inputs": stats.inputs,
        "seconds": round(elapsed, 2),
        "inputs_per_s": round(stats.inputs / elapsed),
        "worst_step_ms": round(1000 * stats.worst_s, 3),
        "worst_step": stats.worst_op,
        "steps_over_1s": len(stats.slow),
        "escaped": len(stats.escaped),
        "steps_ending_needs_reset": stats.needs_reset,
        "steps_ending_serving": stats.serving,
        "findings": (stats.escaped + stats.slow)[:20],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inputs", type=int, default=1_000_000, help="protocol steps per target")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--targets", default="rng,console")
    p.add_argument("--race-seconds", type=float, default=10.0, help="host input racing guest resets")
    a = p.parse_args()
    logging.getLogger("virtkit").setLevel(logging.ERROR)  # every NEEDS_RESET would log a warning

    rows = [run_target(t, a.inputs, a.seed) for t in a.targets.split(",")]
    fed, race_errors = race_input_with_resets(a.race_seconds, a.seed)
    res = {
        "host": platform.node(),
        "python": platform.python_version(),
        "seed": a.seed,
        "inputs_per_target": a.inputs,
        "slow_threshold_s": SLOW_S,
        "targets": rows,
        "race": {"seconds": a.race_seconds, "host_inputs": fed, "errors": race_errors},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fuzz.json").write_text(json.dumps(res, indent=2) + "\n")

    print(f"{'target':<10}{'inputs':>10}{'inputs/s':>10}{'worst ms':>10}{'>1 s':>6}{'escaped':>9}  worst step")
    for r in rows:
        print(f"{r['target']:<10}{r['inputs']:>10}{r['inputs_per_s']:>10}{r['worst_step_ms']:>10}"
              f"{r['steps_over_1s']:>6}{r['escaped']:>9}  {r['worst_step']}")  # fmt: skip
        for finding in r["findings"]:  # type: ignore[attr-defined]
            print(f"  finding: {finding}")
    print(f"race: {fed} host inputs over {a.race_seconds:.0f} s of guest resets, {len(race_errors)} errors")
    print(f"wrote {RESULTS / 'fuzz.json'}")
    bad = any(r["steps_over_1s"] or r["escaped"] for r in rows) or race_errors
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
