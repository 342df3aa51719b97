"""Networks: virtkit's NAT `default` vs libvirt's own `default` network, side by side on this machine.

Measured, each inside its own throwaway network namespace (nothing touches the host's):
  1. start+stop of the NAT network (bridge, firewall rules, dnsmasq): virtkit through its Python API and its
     CLI, libvirt through virsh to libvirtd 9.0 (Debian's libvirt-daemon-system, state on tmpfs in a private
     mount namespace). Rounds alternate between the two; medians are compared.
  2. guest->guest TCP throughput: two guests of the default image (QEMU engine, TCG) on each network, N MiB
     per transfer through busybox nc, transfers alternating between the two networks, timed by the host
     clock from the send until the receiver has counted every byte.
     On libvirt's network the guests' TAPs join libvirt's virbr0 and lease from libvirt's dnsmasq.
Prints both sides and the ratios; writes JSON to bench/results/network.json.

    python bench/network.py [--rounds 5] [--mib 8] [--transfers 3] [--no-guests]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
sys.path.insert(0, str(SRC))

from pyroute2 import IPRoute, netns  # noqa: E402

from virtkit.engines.qemu import QemuEngine, QemuMachine  # noqa: E402
from virtkit.network import NetworkManager  # noqa: E402
from virtkit.oneshot import spec_for  # noqa: E402

RESULTS = HERE / "results"


def ns_pids(name: str) -> list[int]:
    ino, out = os.stat(f"/var/run/netns/{name}").st_ino, []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if os.stat(p / "ns" / "net").st_ino == ino:
                    out.append(int(p.name))
            except OSError:
                pass
    return out


def make_ns(name: str) -> None:
    netns.create(name)
    with IPRoute(netns=name) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")


def remove_ns(name: str) -> None:
    for pid in ns_pids(name):  # only ever processes this benchmark started in its own namespace
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    netns.remove(name)


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


class Guest:
    def __init__(self, machine: QemuMachine) -> None:
        self.machine = machine

    def sh(self, script: str, timeout: float = 120) -> str:
        r = self.machine.agent().exec(["sh", "-c", script], timeout=timeout)
        if r.exitcode != 0:
            raise RuntimeError(f"{script!r} failed in the guest: {(r.stdout + r.stderr).decode()}")
        return r.stdout.decode()

    def ip(self) -> str | None:
        out = self.machine.agent().exec(["sh", "-c", "ip -4 -o addr show dev eth0"]).stdout.decode()
        for w in out.split():
            if "/" in w and w[0].isdigit():
                return w.split("/")[0]
        return None


def boot_pair(ns: str, m: NetworkManager, net: str, workdir: Path, tag: str) -> list[Guest]:
    from virtkit.images import build_image

    img = build_image("tiny")
    guests = []
    for i in range(2):
        name = f"bench-{tag}-{i}"
        nic = m.attach_nic(name, 0, net)
        spec = spec_for(img.kernel, img.initrd, name=name, nics=(nic,))
        machine = QemuEngine(netns=ns, accel="tcg").start(spec, workdir / name, die_with_parent=True)
        guests.append(Guest(machine))
    for g in guests:
        g.machine.wait_ready(180)
        deadline = time.monotonic() + 90
        while g.ip() is None:
            if time.monotonic() > deadline:
                raise RuntimeError("a guest got no DHCP address")
            time.sleep(0.5)
    return guests


def throughput(guests: list[Guest], mib: int, port: int) -> float:
    """MiB/s from guest 0 to guest 1 through busybox nc."""
    a, b = guests
    b.sh(
        f"rm -f /tmp/rx; setsid nc -l -p {port} -e sh -c 'wc -c > /tmp/rx.part; mv /tmp/rx.part /tmp/rx' "
        "</dev/null >/dev/null 2>&1 &"
    )
    dest = b.ip()
    time.sleep(1)
    t0 = time.perf_counter()
    a.sh(f"dd if=/dev/zero bs=1M count={mib} 2>/dev/null | nc {dest} {port}", timeout=600)
    while True:
        got = b.machine.agent().exec(["sh", "-c", "cat /tmp/rx 2>/dev/null"]).stdout.decode().strip()
        if got:
            break
        if time.perf_counter() - t0 > 600:
            raise RuntimeError("the receiver never finished")
        time.sleep(0.05)
    dt = time.perf_counter() - t0
    if int(got) != mib * 1024 * 1024:
        raise RuntimeError(f"received {got} bytes, sent {mib} MiB")
    return mib / dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mib", type=int, default=8)
    ap.add_argument("--transfers", type=int, default=3, help="alternating transfers per side")
    ap.add_argument("--no-guests", action="store_true", help="skip the guest throughput part")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/network.py needs root (network namespaces)", file=sys.stderr)
        return 2
    if not shutil.which("libvirtd"):
        print("libvirtd not found: apt-get install libvirt-daemon-system libvirt-clients", file=sys.stderr)
        return 2
    tag = f"vkb{os.getpid() % 100000}"
    vk_ns, lv_ns = f"{tag}-vk", f"{tag}-lv"
    state = Path(tempfile.mkdtemp(prefix="vkb-state-"))
    state.chmod(0o755)
    work = Path(tempfile.mkdtemp(prefix="vkb-work-"))
    make_ns(vk_ns)
    make_ns(lv_ns)
    lv: subprocess.Popen[str] | None = None
    vkd: subprocess.Popen[bytes] | None = None
    guests: list[Guest] = []
    m = NetworkManager(netns=vk_ns, state_dir=state)
    result: dict[str, object] = {}
    try:
        lv = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                lv_ns,
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                str(HERE / "libvirt_side.sh"),
                str(args.rounds),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert lv.stdout is not None and lv.stdin is not None
        env = {**os.environ, "PYTHONPATH": str(SRC), "VIRTKIT_HOME": str(state)}
        # the net-* verbs go through virtkitd: one in the namespace, started here so that it does not autostart
        # `default` under the rounds' feet (as the CLI's on-demand daemon would)
        vkd = subprocess.Popen(
            ["ip", "netns", "exec", vk_ns, sys.executable, "-m", "virtkit.daemon", "--home", str(state),
             "--no-autostart", "--log-level", "warning"],
            env=env,
        )  # fmt: skip
        from virtkit.client import RawClient

        deadline = time.monotonic() + 30
        while not RawClient(socket=state / "virtkitd.sock").ping():
            if vkd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("virtkitd did not start in the benchmark's namespace")
            time.sleep(0.1)

        def cli(*a: str) -> None:
            subprocess.run(
                ["ip", "netns", "exec", vk_ns, sys.executable, "-m", "virtkit", *a],
                env=env,
                check=True,
                capture_output=True,
            )

        def cli_round() -> None:
            cli("net-start", "default")
            cli("net-stop", "default")

        vk_start, vk_stop, vk_cli = [], [], []
        lv_start, lv_stop = [], []
        m.start("default")  # warm caches (first dnsmasq exec, nft module paths) like libvirtd's first round
        m.stop("default")
        for _ in range(args.rounds):
            vk_start.append(timed(lambda: m.start("default")))
            vk_stop.append(timed(lambda: m.stop("default")))
            vk_cli.append(timed(cli_round))
            line = lv.stdout.readline().split()
            if not line or line[0] != "round":
                raise RuntimeError(f"libvirt side: {' '.join(line)}")
            lv_start.append(int(line[1]) / 1e6)
            lv_stop.append(int(line[2]) / 1e6)
        ready = lv.stdout.readline().split()
        if not ready or ready[0] != "ready":
            raise RuntimeError(f"libvirt side: {' '.join(ready)}")
        vk_total = med([a + b for a, b in zip(vk_start, vk_stop, strict=True)])
        lv_total = med([a + b for a, b in zip(lv_start, lv_stop, strict=True)])
        result["start_stop"] = {
            "rounds": args.rounds,
            "virtkit_api_s": {"start": med(vk_start), "stop": med(vk_stop), "total": vk_total},
            "virtkit_cli_s": {"total": med(vk_cli)},
            "libvirt_virsh_s": {"start": med(lv_start), "stop": med(lv_stop), "total": lv_total},
            "ratio_api_vs_libvirt": vk_total / lv_total,
            "ratio_cli_vs_libvirt": med(vk_cli) / lv_total,
            "libvirt_version": ready[1:],
        }
        print(f"NAT network start+stop, median of {args.rounds}:")
        print(
            f"  virtkit API  {vk_total * 1000:8.1f} ms (start {med(vk_start) * 1000:.1f}, "
            f"stop {med(vk_stop) * 1000:.1f})"
        )
        print(f"  virtkit CLI  {med(vk_cli) * 1000:8.1f} ms (two processes: net-start, net-stop)")
        print(
            f"  libvirt      {lv_total * 1000:8.1f} ms (virsh net-start {med(lv_start) * 1000:.1f}, "
            f"net-destroy {med(lv_stop) * 1000:.1f})"
        )
        print(f"  ratio virtkit/libvirt: API {vk_total / lv_total:.2f}, CLI {med(vk_cli) / lv_total:.2f}")

        if not args.no_guests:
            m.start("default")
            vk_pair = boot_pair(vk_ns, m, "default", work, "vk")
            guests += vk_pair
            with NetworkManager(netns=lv_ns, state_dir=state) as lvm:
                lv_pair = boot_pair(lv_ns, lvm, "bridge=virbr0", work, "lv")
            guests += lv_pair
            # Alternate transfers so drift in this shared machine's load hits both sides alike.
            vk_tps, lv_tps = [], []
            for i in range(args.transfers):
                vk_tps.append(throughput(vk_pair, args.mib, 5001 + i))
                lv_tps.append(throughput(lv_pair, args.mib, 5001 + i))
            vk_tp, lv_tp = med(vk_tps), med(lv_tps)
            result["guest_to_guest"] = {
                "mib": args.mib,
                "transfers": args.transfers,
                "engine": "qemu (TCG)",
                "virtkit_mib_s": vk_tp,
                "libvirt_mib_s": lv_tp,
                "virtkit_all": vk_tps,
                "libvirt_all": lv_tps,
                "ratio": vk_tp / lv_tp,
            }
            print(f"guest->guest TCP, {args.mib} MiB through busybox nc, median of {args.transfers} (QEMU TCG):")
            print(
                f"  virtkit default {vk_tp:7.2f} MiB/s   libvirt default {lv_tp:7.2f} MiB/s   ratio {vk_tp / lv_tp:.2f}"
            )
    finally:
        if vkd is not None:
            vkd.terminate()
            vkd.wait(30)
        for g in guests:
            g.machine.destroy()
        for vm in {a.vm for a in m.attachments()}:
            m.detach_vm(vm)
        with NetworkManager(netns=lv_ns, state_dir=state) as lvm:
            for vm in {a.vm for a in lvm.attachments()}:
                lvm.detach_vm(vm)
        m.stop("default")
        m.close()
        if lv is not None:
            try:
                assert lv.stdin is not None
                lv.stdin.write("stop\n")
                lv.stdin.close()
                lv.wait(30)
            except (OSError, subprocess.TimeoutExpired, AssertionError):
                lv.kill()
                lv.wait()
        remove_ns(vk_ns)
        remove_ns(lv_ns)
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    result["host"] = {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    result["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "network.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'network.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
