"""Control-plane speed: virtkitd vs libvirt (virsh, QEMU driver), same host, same guest, same run.

Measures (1) define + start + destroy + undefine cycles per second and (2) ``list --all`` latency with 20
defined domains. Both sides boot the default image's kernel and initramfs under TCG with 256 MiB, one vCPU,
a serial console, the guest-agent channel and virtio-rng; neither waits for the guest to boot (start
returns once QEMU runs). Rounds alternate (virtkit, libvirt, virtkit, ...) so drift hits both.

Levels:
  * API: virtkit's Python client (HTTP over the unix socket) vs the libvirt API time virsh reports for
    each command (``virsh -t``: the call itself, without virsh's process start-up).
  * CLI: ``virtkit list --all`` vs ``virsh list --all`` as processes, wall time.

libvirt runs from Debian's libvirt-daemon-system in private mount and network namespaces
(bench/libvirt_env.sh says exactly what differs from the packaged configuration: libvirtd and virtlogd are
started directly since this host has no systemd, the default network is not autostarted, QEMU runs as root).

    python bench/control.py [--cycles 8] [--lists 30]

Prints the medians and ratios, writes JSON to bench/results/control.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
sys.path.insert(0, str(SRC))
sys.path.insert(0, str(HERE.parent))  # tests.support: the daemon harness

RESULTS = HERE / "results"
VIRSH = ["virsh", "-q", "-t", "-c", "qemu:///system"]
TIME_RE = re.compile(r"\(Time: ([0-9.]+) ms\)")

XML = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel><initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline></os>
  <cpu mode='custom' match='exact'><model fallback='allow'>qemu64</model></cpu>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='file'><source path='/var/log/libvirt/qemu/{name}-console.log'/></serial>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <memballoon model='none'/>
  </devices>
</domain>
"""


# -- libvirt side: runs inside bench/libvirt_env.sh, driven line by line over stdin/stdout
def virsh(*args: str, stdin: str | None = None) -> tuple[float, float]:
    """Run one virsh command; returns (API ms as virsh -t reports it, wall ms of the process)."""
    t0 = time.perf_counter()
    p = subprocess.run([*VIRSH, *args], capture_output=True, text=True, input=stdin)
    wall = (time.perf_counter() - t0) * 1000
    if p.returncode != 0:
        raise RuntimeError(f"virsh {' '.join(args)}: {p.stderr.strip()}")
    m = TIME_RE.findall(p.stdout + p.stderr)
    return (sum(float(x) for x in m) if m else wall), wall


def libvirt_worker(kernel: str, initrd: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="lvbench-"))

    def xml(name: str) -> Path:
        f = tmp / f"{name}.xml"
        f.write_text(XML.format(name=name, kernel=kernel, initrd=initrd))
        return f

    out = sys.stdout
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "cycle":
            name = f"cyc{args[0]}"
            f = xml(name)
            t0 = time.perf_counter()
            api = virsh("define", str(f))[0] + virsh("start", name)[0] + virsh("destroy", name)[0] + \
                virsh("undefine", name)[0]
            res: dict[str, Any] = {"api_ms": api, "wall_ms": (time.perf_counter() - t0) * 1000}
        elif cmd == "define":
            for i in range(int(args[0])):
                virsh("define", str(xml(f"idle{i}")))
            res = {"ok": True}
        elif cmd == "list":
            api, wall = virsh("list", "--all")
            res = {"api_ms": api, "wall_ms": wall}
        elif cmd == "version":
            res = {"version": subprocess.run(["virsh", "--version"], capture_output=True, text=True).stdout.strip()}
        else:
            break
        out.write(json.dumps(res) + "\n")
        out.flush()
    shutil.rmtree(tmp, ignore_errors=True)


# -- virtkit side
def virtkit_cli_list(home: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "virtkit.cli.vm", "list", "--all"], capture_output=True, env=env,
                       text=True)
    wall = (time.perf_counter() - t0) * 1000
    if p.returncode != 0:
        raise RuntimeError(p.stderr)
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=8)
    ap.add_argument("--lists", type=int, default=30)
    ap.add_argument("--defined", type=int, default=20)
    ap.add_argument("--libvirt-worker", nargs=2, metavar=("KERNEL", "INITRD"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.libvirt_worker:
        libvirt_worker(*a.libvirt_worker)
        return
    if shutil.which("virsh") is None or shutil.which("libvirtd") is None:
        sys.exit("bench/control.py needs libvirt: apt-get install libvirt-daemon-system libvirt-clients")

    from tests.support.daemon import running_daemon

    from virtkit.images import build_image

    img = build_image("tiny")
    home = Path(tempfile.mkdtemp(prefix="vkb-", dir="/tmp"))
    worker = subprocess.Popen(
        ["unshare", "-m", "-n", "--propagation", "private", str(HERE / "libvirt_env.sh"),
         sys.executable, str(Path(__file__).resolve()), "--libvirt-worker", str(img.kernel), str(img.initrd)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    assert worker.stdin is not None and worker.stdout is not None

    def lv(cmd: str) -> dict[str, Any]:
        assert worker.stdin is not None and worker.stdout is not None
        worker.stdin.write(cmd + "\n")
        worker.stdin.flush()
        line = worker.stdout.readline()
        if not line:
            raise RuntimeError("the libvirt side stopped (see its stderr above)")
        r: dict[str, Any] = json.loads(line)
        return r

    boot = {"kernel": str(img.kernel), "initrd": str(img.initrd)}
    vk_cycle: list[float] = []
    lv_cycle_api: list[float] = []
    lv_cycle_wall: list[float] = []
    vk_list: list[float] = []
    lv_list_api: list[float] = []
    vk_cli: list[float] = []
    lv_cli: list[float] = []
    try:
        lv_version = lv("version")["version"]
        with running_daemon(home, images=Path(img.kernel).parent.parent) as d, d.client() as c:
            env = {**os.environ, "PYTHONPATH": str(SRC), "VIRTKIT_SOCKET": str(d.socket),
                   "VIRTKIT_NO_DAEMON_AUTOSTART": "1"}
            # warm-up: one cycle each (page cache, first QEMU start)
            c.define({"name": "warm", "engine": "qemu", "memory": 256, "boot": boot})
            c.start("warm")
            c.destroy("warm")
            c.undefine("warm")
            lv("cycle warm")
            for i in range(a.cycles):
                t0 = time.perf_counter()
                n = f"cyc{i}"
                c.define({"name": n, "engine": "qemu", "memory": 256, "boot": boot})
                c.start(n)
                c.destroy(n)
                c.undefine(n)
                vk_cycle.append((time.perf_counter() - t0) * 1000)
                r = lv(f"cycle {i}")
                lv_cycle_api.append(r["api_ms"])
                lv_cycle_wall.append(r["wall_ms"])
                print(f"cycle {i}: virtkit {vk_cycle[-1]:.0f} ms, libvirt {r['api_ms']:.0f} ms (API) "
                      f"{r['wall_ms']:.0f} ms (virsh processes)", flush=True)
            for i in range(a.defined):
                c.define({"name": f"idle{i}", "engine": "qemu", "memory": 256, "boot": boot})
            lv(f"define {a.defined}")
            assert len(c.list(all=True)) == a.defined
            for _ in range(a.lists):
                t0 = time.perf_counter()
                c.list(all=True)
                vk_list.append((time.perf_counter() - t0) * 1000)
                lv_list_api.append(lv("list")["api_ms"])
            for _ in range(max(3, a.lists // 5)):
                vk_cli.append(virtkit_cli_list(home, env))
                lv_cli.append(lv("list")["wall_ms"])
    finally:
        with contextlib.suppress(Exception):
            worker.stdin.close()
        worker.wait(120)
        shutil.rmtree(home, ignore_errors=True)

    med = statistics.median
    res = {
        "host": {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                 "python": platform.python_version()},
        "libvirt": lv_version,
        "guest": "tiny image, TCG, 256 MiB, 1 vCPU, serial + agent channel + virtio-rng, no NIC",
        "cycles": a.cycles, "defined_for_list": a.defined, "lists": a.lists,
        "cycle_ms": {"virtkit_api": vk_cycle, "libvirt_api": lv_cycle_api, "libvirt_virsh_processes": lv_cycle_wall},
        "cycles_per_s": {"virtkit_api": 1000 / med(vk_cycle), "libvirt_api": 1000 / med(lv_cycle_api),
                         "libvirt_virsh_processes": 1000 / med(lv_cycle_wall)},
        "list_ms": {"virtkit_api": vk_list, "libvirt_api": lv_list_api, "virtkit_cli": vk_cli,
                    "virsh_cli": lv_cli},
        "list_median_ms": {"virtkit_api": med(vk_list), "libvirt_api": med(lv_list_api),
                           "virtkit_cli": med(vk_cli), "virsh_cli": med(lv_cli)},
    }
    res["ratios"] = {
        "cycles_per_s_virtkit_over_libvirt_api": res["cycles_per_s"]["virtkit_api"] / res["cycles_per_s"]["libvirt_api"],
        "list_latency_virtkit_over_libvirt_api": med(vk_list) / med(lv_list_api),
        "list_latency_virtkit_cli_over_virsh_cli": med(vk_cli) / med(lv_cli),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "control.json").write_text(json.dumps(res, indent=2) + "\n")
    cps, lm, r = res["cycles_per_s"], res["list_median_ms"], res["ratios"]
    print(f"\nlibvirt: {lv_version}")
    print(f"define+start+destroy+undefine: virtkit {cps['virtkit_api']:.2f}/s, libvirt {cps['libvirt_api']:.2f}/s "
          f"(API; {cps['libvirt_virsh_processes']:.2f}/s with virsh processes) "
          f"-> ratio {r['cycles_per_s_virtkit_over_libvirt_api']:.2f}x")
    print(f"list --all with {a.defined} defined: virtkit {lm['virtkit_api']:.2f} ms, libvirt {lm['libvirt_api']:.2f} ms "
          f"(API) -> ratio {r['list_latency_virtkit_over_libvirt_api']:.2f}x (lower is better)")
    print(f"list --all as a process: virtkit {lm['virtkit_cli']:.0f} ms, virsh {lm['virsh_cli']:.0f} ms "
          f"-> ratio {r['list_latency_virtkit_cli_over_virsh_cli']:.2f}x")
    print(f"wrote {RESULTS / 'control.json'}")


if __name__ == "__main__":
    main()
