"""Real networks in throwaway network namespaces: a "host", an "outside" with its own hosts, and fake guests.

Nothing here touches the namespace the tests run in: every link, rule and process lives in a namespace these
fixtures create (names start with ``vkt<pid>-``) and remove in finalizers, failing tests included.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pyroute2 import IPRoute, netns

from virtkit.network import NetworkManager

HERE = Path(__file__).parent
SRC = HERE.parents[1] / "src"
PR_SET_CHILD_SUBREAPER = 36
OUT_IP, HOST_IP = "203.0.113.1", "203.0.113.2"

SERVER = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("client=" + self.client_address[0] + "\n").encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
"""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/network/" in str(item.fspath):
            item.add_marker(pytest.mark.network)


@pytest.fixture(scope="session", autouse=True)
def _root_and_reaper() -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.skip("network tests need root (they create network namespaces)")
    # dnsmasq daemonises; as a subreaper we collect it (and its exits) instead of leaving zombies behind.
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    yield
    reap()


def reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def ns_inode(name: str) -> int:
    return os.stat(f"/var/run/netns/{name}").st_ino


def pids_in(name: str) -> set[int]:
    """Living processes whose network namespace is ``name``."""
    ino, out = ns_inode(name), set()
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if os.stat(p / "ns" / "net").st_ino == ino and (p / "stat").read_text().split(") ")[1][0] != "Z":
                out.add(int(p.name))
        except (OSError, IndexError):
            continue
    return out


@dataclass
class Namespaces:
    prefix: str
    made: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def create(self, short: str) -> str:
        name = f"{self.prefix}-{short}"
        netns.create(name)
        self.made.append(name)
        with IPRoute(netns=name) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        return name

    def run(self, ns: str, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} in {ns} failed ({p.returncode}): {p.stderr}{p.stdout}")
        return p

    def ok(self, ns: str, *cmd: str, timeout: float = 30) -> bool:
        return self.run(ns, *cmd, check=False, timeout=timeout).returncode == 0

    def spawn(self, ns: str | None, *cmd: str, **kw: object) -> subprocess.Popen[str]:
        argv = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
        p: subprocess.Popen[str] = subprocess.Popen(argv, text=True, **kw)  # type: ignore[call-overload]
        self.procs.append(p)
        return p

    def snapshot(self, ns: str) -> dict[str, object]:
        with IPRoute(netns=ns) as ipr:
            links = sorted(lk.get_attr("IFLA_IFNAME") for lk in ipr.get_links())
        rules = json.loads(self.run(ns, "nft", "-j", "list", "ruleset").stdout)["nftables"]
        return {"links": links, "nft": [r for r in rules if "metainfo" not in r], "pids": pids_in(ns)}

    def cleanup(self) -> None:
        for close in self.closers:
            close()
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for name in reversed(self.made):
            # Whatever still runs in our own throwaway namespaces (a dnsmasq a failed test left) was started here.
            for pid in pids_in(name):
                os.kill(pid, signal.SIGKILL)
            netns.remove(name)
        reap()
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def nss(request: pytest.FixtureRequest) -> Iterator[Namespaces]:
    n = Namespaces(f"vkt{os.getpid() % 100000}")
    request.addfinalizer(n.cleanup)
    yield n


@dataclass
class World:
    nss: Namespaces
    host: str
    out: str
    uplink: str  # the host interface facing the outside (eth0, or br0 when bridged)
    state_dir: Path

    def manager(self) -> NetworkManager:
        m = NetworkManager(netns=self.host, state_dir=self.state_dir)
        self.nss.closers.append(m.close)  # its netlink socket keeps the namespace alive
        return m


def build_world(nss: Namespaces, tmp: Path, bridged: bool = False, outside_dhcp: bool = False) -> World:
    host, out = nss.create("host"), nss.create("out")
    with IPRoute(netns=host) as ipr:
        ipr.link("add", ifname="eth0", kind="veth", peer={"ifname": "eth0", "net_ns_fd": out})
        eth0 = ipr.link_lookup(ifname="eth0")[0]
        ipr.link("set", index=eth0, state="up")
        up = eth0
        if bridged:
            ipr.link("add", ifname="br0", kind="bridge", br_forward_delay=0, br_stp_state=0)
            up = ipr.link_lookup(ifname="br0")[0]
            ipr.link("set", index=eth0, master=up)
            ipr.link("set", index=up, state="up")
        ipr.addr("add", index=up, address=HOST_IP, prefixlen=24)
        ipr.route("add", dst="0.0.0.0/0", gateway=OUT_IP)
    with IPRoute(netns=out) as ipr:
        idx = ipr.link_lookup(ifname="eth0")[0]
        ipr.addr("add", index=idx, address=OUT_IP, prefixlen=24)
        ipr.link("set", index=idx, state="up")
    nss.spawn(out, sys.executable, "-c", SERVER, "80")
    if outside_dhcp:
        d = tmp / "outside-dhcp"
        d.mkdir()
        nss.spawn(
            out,
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--port=0",
            "--interface=eth0",
            "--bind-interfaces",
            "--dhcp-range=203.0.113.100,203.0.113.150,1h",
            f"--dhcp-leasefile={d}/leases",
            f"--pid-file={d}/pid",
            "--dhcp-option=option:router,203.0.113.1",
        )
    wait_for(
        lambda: nss.ok(host, "timeout", "5", "busybox", "wget", "-q", "-O", "-", f"http://{OUT_IP}/"),
        10,
        "the outside HTTP server",
    )
    # dnsmasq drops to nobody and rereads its files on SIGHUP: the state dir must be traversable (pytest's is 0700).
    state = Path(tempfile.mkdtemp(prefix="vkt-state-"))
    state.chmod(0o755)
    nss.dirs.append(state)
    return World(nss, host, out, "br0" if bridged else "eth0", state)


def wait_for(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Guest:
    nss: Namespaces
    ns: str
    mac: str

    def dhcp(self, timeout: int = 15) -> str | None:
        p = self.nss.run(
            self.ns,
            "busybox",
            "udhcpc",
            "-i",
            "eth0",
            "-n",
            "-q",
            "-f",
            "-t",
            str(timeout),
            "-T",
            "1",
            "-s",
            str(HERE / "udhcpc.sh"),
            check=False,
            timeout=timeout + 10,
        )
        if p.returncode != 0:
            return None
        return self.ip()

    def ip(self) -> str | None:
        with IPRoute(netns=self.ns) as ipr:
            idx = ipr.link_lookup(ifname="eth0")[0]
            addrs = [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=2, index=idx)]
        return addrs[0] if addrs else None

    def ping(self, ip: str, count: int = 2) -> bool:
        return self.nss.ok(self.ns, "busybox", "ping", "-c", str(count), "-W", "2", ip)

    def wget(self, url: str) -> str | None:
        p = self.nss.run(self.ns, "timeout", "5", "busybox", "wget", "-q", "-O", "-", url, check=False)
        return p.stdout if p.returncode == 0 else None


def fake_guest(world: World, name: str, kind: str, target: str, mac: str) -> Guest:
    """A guest namespace wired to the VM's TAP/macvtap through a frame copier (what QEMU does)."""
    gns = world.nss.create(name)
    p = world.nss.spawn(
        None,
        sys.executable,
        str(HERE / "fakeguest.py"),
        world.host,
        gns,
        kind,
        target,
        mac,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line.strip() == "ready", f"fake guest {name} did not start"
    return Guest(world.nss, gns, mac)


def plug(world: World, m: NetworkManager, vm: str, net: str, index: int = 0, publish: tuple[str, ...] = ()) -> Guest:
    nic = m.attach_nic(vm, index, net, publish)
    assert nic.ifname and nic.mac
    if nic.kind == "macvtap":
        return fake_guest(world, vm, "dev", str(m.macvtap_device(vm, index)), nic.mac)
    return fake_guest(world, vm, "tap", nic.ifname, nic.mac)
