"""CLI start-up: ``virtkit VERB`` vs ``virsh VERB`` as processes, same host, same run.

Verbs: ``--version``, ``list --all``, ``dominfo VM``, ``start VM`` (a shut-off guest; destroyed again between
rounds, untimed) and ``exec VM -- true`` (virsh has no exec: its nearest one-process agent round trip is
``qemu-agent-command VM '{"execute":"guest-ping"}'``). Both sides run the default image's kernel and
initramfs under QEMU (TCG), 256 MiB, one vCPU, a serial console and the guest-agent channel; virtkit through a
real virtkitd with the QEMU engine, libvirt from Debian's libvirt-daemon-system as bench/control.py runs it
(bench/libvirt_env.sh: private mount and network namespaces). Rounds alternate (virtkit, virsh, ...).

For each verb: the process's wall time, the time of the call itself (virtkit: the same API call made by the
Python client; virsh: ``virsh -t``), and their difference, the CLI's own cost (start-up, parsing, printing).
The target (issue 9) is a virtkit wall time <= 100 ms for --version, list, dominfo, start and exec's own
overhead. Python modules are byte-compiled first, as an installed package's are.

    python bench/cli.py [--rounds 15]

Prints the table and writes JSON to bench/results/cli.json.
"""

from __future__ import annotations

import argparse
import compileall
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
sys.path.insert(0, str(HERE.parent))  # the checkout root: tests.support

RESULTS = HERE / "results"
VIRSH = ["virsh", "-q", "-c", "qemu:///system"]
TIME_RE = re.compile(r"\(Time: ([0-9.]+) ms\)")
VERBS = ("version", "list", "dominfo", "start", "exec")
PING = '{"execute":"guest-ping"}'

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
    <memballoon model='none'/>
  </devices>
</domain>
"""


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Run a process; its wall time in ms and its output (stdout + stderr). Fails on a non-zero exit."""
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    wall = (time.perf_counter() - t0) * 1000
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {p.returncode}: {p.stderr.strip()}")
    return wall, p.stdout + p.stderr


# -- libvirt side: runs inside bench/libvirt_env.sh, driven line by line over stdin/stdout
def virsh_verb(verb: str) -> dict[str, float]:
    """One virsh process for ``verb``: wall ms and the call's own ms (virsh -t)."""
    args = {
        "version": ["--version"],
        "list": ["list", "--all"],
        "dominfo": ["dominfo", "b1"],
        "start": ["start", "s1"],
        "exec": ["qemu-agent-command", "b1", PING],
    }[verb]
    argv = ["virsh", "--version"] if verb == "version" else [*VIRSH[:2], "-t", *VIRSH[2:], *args]
    wall, out = timed(argv)
    m = TIME_RE.findall(out)
    api = sum(float(x) for x in m) if m else 0.0
    if verb == "start":
        subprocess.run([*VIRSH, "destroy", "s1"], capture_output=True, check=True)
    return {"wall_ms": wall, "api_ms": api}


def libvirt_worker(kernel: str, initrd: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="lvcli-"))
    for name in ("b1", "s1"):
        f = tmp / f"{name}.xml"
        f.write_text(XML.format(name=name, kernel=kernel, initrd=initrd))
        subprocess.run([*VIRSH, "define", str(f)], capture_output=True, check=True)
    subprocess.run([*VIRSH, "start", "b1"], capture_output=True, check=True)
    deadline = time.monotonic() + 300
    while subprocess.run([*VIRSH, "qemu-agent-command", "b1", PING], capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the libvirt guest's agent never answered")
        time.sleep(1)
    version = subprocess.run(["virsh", "--version"], capture_output=True, text=True).stdout.strip()
    sys.stdout.write(json.dumps({"ready": True, "version": version}) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        verb = line.strip()
        if verb not in VERBS:
            break
        sys.stdout.write(json.dumps(virsh_verb(verb)) + "\n")
        sys.stdout.flush()
    shutil.rmtree(tmp, ignore_errors=True)


# -- virtkit side
def virtkit_verb(verb: str, env: dict[str, str], client: Any) -> dict[str, float]:
    """One virtkit process for ``verb`` (wall ms), and the same API call made in-process (api ms)."""
    exe = Path(sys.executable).with_name("virtkit")
    cli = [str(exe)] if exe.exists() else [sys.executable, "-m", "virtkit"]
    args, call = {
        "version": (["--version"], None),
        "list": (["list", "--all"], lambda: client.list(all=True)),
        "dominfo": (["dominfo", "b1"], lambda: client.info("b1")),
        "start": (["start", "s1"], None),
        "exec": (["exec", "b1", "--", "true"], lambda: client.exec("b1", ["true"])),
    }[verb]
    wall, _ = timed([*cli, *args], env)
    api = 0.0
    if verb == "start":
        # the start call's own time: an in-process start of the same guest, after the process's one
        client.action("s1", "destroy")
        t0 = time.perf_counter()
        client.action("s1", "start")
        api = (time.perf_counter() - t0) * 1000
        client.action("s1", "destroy")
    elif call is not None:
        t0 = time.perf_counter()
        call()
        api = (time.perf_counter() - t0) * 1000
    return {"wall_ms": wall, "api_ms": api}


def typer_path_list(env: dict[str, str]) -> float:
    """``list --all`` parsed by the full typer tree (what the entry point's fast path skips), for reference."""
    code = "import sys; from virtkit.cli.app import app; sys.argv[0] = 'virtkit'; app()"
    return timed([sys.executable, "-c", code, "list", "--all"], env)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--libvirt-worker", nargs=2, metavar=("KERNEL", "INITRD"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.libvirt_worker:
        libvirt_worker(*a.libvirt_worker)
        return
    if shutil.which("virsh") is None or shutil.which("libvirtd") is None:
        sys.exit("bench/cli.py needs libvirt: apt-get install libvirt-daemon-system libvirt-clients")
    compileall.compile_dir(str(SRC), quiet=1)  # as an installed package is

    from tests.support.daemon import running_daemon

    from virtkit.client import RawClient
    from virtkit.images import build_image

    img = build_image("tiny")
    home = Path(tempfile.mkdtemp(prefix="vkc-", dir="/tmp"))
    worker = subprocess.Popen(
        ["unshare", "-m", "-n", "--propagation", "private", str(HERE / "libvirt_env.sh"),
         sys.executable, str(Path(__file__).resolve()), "--libvirt-worker", str(img.kernel), str(img.initrd)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(SRC)},
    )  # fmt: skip
    assert worker.stdin is not None and worker.stdout is not None

    def lv(verb: str | None = None) -> dict[str, Any]:
        assert worker.stdin is not None and worker.stdout is not None
        if verb is not None:
            worker.stdin.write(verb + "\n")
            worker.stdin.flush()
        line = worker.stdout.readline()
        if not line:
            raise RuntimeError("the libvirt side stopped (see its stderr above)")
        r: dict[str, Any] = json.loads(line)
        return r

    boot = {"kernel": str(img.kernel), "initrd": str(img.initrd)}
    vk: dict[str, list[dict[str, float]]] = {v: [] for v in VERBS}
    lvr: dict[str, list[dict[str, float]]] = {v: [] for v in VERBS}
    typer_list: list[float] = []
    try:
        with running_daemon(home, images=Path(img.kernel).parent.parent) as d:
            c = RawClient(socket=d.socket)
            env = {**os.environ, "PYTHONPATH": str(SRC), "VIRTKIT_SOCKET": str(d.socket),
                   "VIRTKIT_HOME": str(home), "VIRTKIT_NO_DAEMON_AUTOSTART": "1"}  # fmt: skip
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            for name in ("b1", "s1"):
                c.define({"name": name, "engine": "qemu", "memory": 256, "boot": boot})
            c.action("b1", "start")
            c.wait_agent("b1", 300)
            lv_version = lv()["version"]
            for verb in VERBS:  # warm-up: page cache, first connections
                virtkit_verb(verb, env, c)
                lv(verb)
            for i in range(a.rounds):
                for verb in VERBS:
                    vk[verb].append(virtkit_verb(verb, env, c))
                    lvr[verb].append(lv(verb))
                typer_list.append(typer_path_list(env))
                print(f"round {i + 1}/{a.rounds}: " + ", ".join(
                    f"{v} {vk[v][-1]['wall_ms']:.0f}/{lvr[v][-1]['wall_ms']:.0f} ms" for v in VERBS), flush=True)  # fmt: skip
            c.action("b1", "destroy")
    finally:
        with contextlib.suppress(Exception):
            worker.stdin.close()
        worker.wait(120)
        shutil.rmtree(home, ignore_errors=True)

    med = statistics.median

    def summary(rows: list[dict[str, float]]) -> dict[str, float]:
        wall, api = med(r["wall_ms"] for r in rows), med(r["api_ms"] for r in rows)
        return {"wall_ms": wall, "api_ms": api, "overhead_ms": med(r["wall_ms"] - r["api_ms"] for r in rows)}

    table = {v: {"virtkit": summary(vk[v]), "virsh": summary(lvr[v])} for v in VERBS}
    for v in VERBS:
        t = table[v]
        t["wall_ratio"] = t["virtkit"]["wall_ms"] / t["virsh"]["wall_ms"]  # type: ignore[assignment]
        t["overhead_ratio"] = t["virtkit"]["overhead_ms"] / t["virsh"]["overhead_ms"]  # type: ignore[assignment]
    res = {
        "host": {
            "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_1min": os.getloadavg()[0],
        },
        "libvirt": lv_version,
        "guest": "tiny image, TCG, 256 MiB, 1 vCPU, serial + agent channel",
        "rounds": a.rounds,
        "exec_peer": "virsh qemu-agent-command VM guest-ping (virsh has no exec)",
        "target_ms": 100,
        "median": table,
        "list_through_typer_ms": med(typer_list),
        "raw": {"virtkit": vk, "virsh": lvr, "list_through_typer_ms": typer_list},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cli.json").write_text(json.dumps(res, indent=2) + "\n")
    print(f"\nlibvirt: {lv_version}; medians of {a.rounds} rounds, ms (overhead = wall - the call itself)")
    print(f"{'verb':<10}{'virtkit wall':>13}{'virsh wall':>12}{'ratio':>7}"
          f"{'virtkit ovh':>13}{'virsh ovh':>11}{'ratio':>7}  target <= 100 ms")  # fmt: skip
    for v in VERBS:
        t = table[v]
        vkw, lvw = t["virtkit"], t["virsh"]
        own = vkw["overhead_ms"] if v in ("start", "exec") else vkw["wall_ms"]
        print(f"{v:<10}{vkw['wall_ms']:>13.1f}{lvw['wall_ms']:>12.1f}{t['wall_ratio']:>7.2f}"
              f"{vkw['overhead_ms']:>13.1f}{lvw['overhead_ms']:>11.1f}{t['overhead_ratio']:>7.2f}"
              f"  {'met' if own <= 100 else 'MISSED'}")  # fmt: skip
    print(f"list --all through the full typer tree (no fast path): {res['list_through_typer_ms']:.1f} ms")
    print(f"wrote {RESULTS / 'cli.json'}")


if __name__ == "__main__":
    main()
