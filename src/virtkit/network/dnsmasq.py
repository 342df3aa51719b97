"""dnsmasq for one network: the configuration file we write, its pid and lease files, and lease parsing.

Everything is passed through our own file (``--conf-file``), never on a command line assembled from input; the
values are validated by :mod:`virtkit.network.spec`, and :func:`_safe` refuses anything that could still start a
new option (newline, '#', ',' ...). dnsmasq daemonises, so it outlives the virtkit process that started it and a
new one adopts it through the pid file.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from virtkit.errors import HostError
from virtkit.network.spec import DhcpHost, NetworkSpec

_SAFE = re.compile(r"^[A-Za-z0-9_.:/-]+$")


def _safe(value: object) -> str:
    s = str(value)
    if not _SAFE.fullmatch(s):
        raise ValueError(f"{s!r} cannot go into a dnsmasq configuration")
    return s


@dataclass(frozen=True)
class Paths:
    conf: Path
    hostsfile: Path
    leases: Path
    pid: Path

    @classmethod
    def under(cls, run: Path) -> Paths:
        return cls(run / "dnsmasq.conf", run / "dhcp-hosts", run / "dnsmasq.leases", run / "dnsmasq.pid")


def config(spec: NetworkSpec, paths: Paths) -> str:
    """The dnsmasq.conf for a nat or isolated network (libvirt's choices, listening on the bridge only)."""
    assert spec.routed and spec.subnet is not None and spec.bridge is not None
    net = spec.subnet.network
    lines = [
        "# written by virtkit; changes are overwritten when the network starts",
        "strict-order",
        "bind-dynamic",
        f"interface={_safe(spec.bridge)}",
        "except-interface=lo",
        f"listen-address={_safe(spec.subnet.ip)}",
        f"pid-file={_safe(paths.pid)}",
        f"dhcp-leasefile={_safe(paths.leases)}",
        f"dhcp-hostsfile={_safe(paths.hostsfile)}",
        # No DHCP broadcast/lease scripts, no /etc/hosts of the host leaking into guests' DNS.
        "no-hosts",
        f"addn-hosts={_safe(paths.hostsfile.with_name('dns-hosts'))}",
    ]
    if spec.mode == "isolated":
        # Guests must not learn a route out: no router option, and DNS answers only what is local.
        lines += ["dhcp-option=option:router", "no-resolv"]
    if spec.domain:
        d = _safe(spec.domain)
        lines += [f"domain={d}", f"local=/{d}/", "expand-hosts"]
    if spec.dhcp_start is not None and spec.dhcp_end is not None:
        size = net.num_addresses - 2
        lines += [
            f"dhcp-range={_safe(spec.dhcp_start)},{_safe(spec.dhcp_end)},{_safe(net.netmask)},1h",
            f"dhcp-lease-max={size}",
            "dhcp-no-override",
            "dhcp-authoritative",
        ]
    return "\n".join(lines) + "\n"


def hostsfile(hosts: Iterable[DhcpHost]) -> str:
    """``dhcp-hostsfile`` lines (reread on SIGHUP, so VMs' reservations change without a restart)."""
    out = []
    for h in hosts:
        fields = [_safe(h.mac), _safe(h.ip)]
        if h.hostname:
            fields.append(_safe(h.hostname))
        out.append(",".join(fields))
    return "\n".join(out) + ("\n" if out else "")


def dns_hosts(hosts: Iterable[DhcpHost]) -> str:
    """``addn-hosts`` lines: reserved guests resolve by name even before they ask for a lease."""
    return "".join(f"{_safe(h.ip)} {_safe(h.hostname)}\n" for h in hosts if h.hostname)


@dataclass(frozen=True)
class Lease:
    expiry: int
    mac: str
    ip: ipaddress.IPv4Address
    hostname: str | None
    client_id: str | None


def parse_leases(text: str) -> list[Lease]:
    """dnsmasq's lease file: ``expiry mac ip hostname|* clientid|*`` per line; IPv6 lines and junk are skipped."""
    leases = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[0] == "duid":
            continue
        try:
            ip = ipaddress.ip_address(parts[2])
            expiry = int(parts[0])
        except ValueError:
            continue
        if not isinstance(ip, ipaddress.IPv4Address):
            continue
        leases.append(
            Lease(
                expiry,
                parts[1].lower(),
                ip,
                None if parts[3] == "*" else parts[3],
                None if len(parts) < 5 or parts[4] == "*" else parts[4],
            )
        )
    return leases


def read_pid(path: Path, conf: Path) -> int | None:
    """The pid in ``path`` if that process is a dnsmasq started with ``conf`` (pids get reused)."""
    try:
        pid = int(path.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    if not cmdline or not cmdline[0].endswith(b"dnsmasq"):
        return None
    return pid if f"--conf-file={conf}".encode() in cmdline else None


def start(paths: Paths, preexec: Callable[[], None] | None, binary: str = "dnsmasq") -> int:
    try:
        p = subprocess.run(
            [binary, f"--conf-file={paths.conf}"],
            capture_output=True,
            text=True,
            preexec_fn=preexec,
            timeout=30,
            check=False,
        )
    except FileNotFoundError as e:
        raise HostError("dnsmasq is not installed", hint="apt-get install dnsmasq-base") from e
    if p.returncode != 0:
        raise HostError(
            f"dnsmasq did not start: {p.stderr.strip()}",
            hint="another DHCP/DNS server may hold ports 53/67 on that bridge",
        )
    # The parent exits after the daemon has written its pid file.
    for _ in range(100):
        pid = read_pid(paths.pid, paths.conf)
        if pid is not None:
            return pid
        time.sleep(0.02)
    raise HostError(f"dnsmasq started but wrote no pid file at {paths.pid}")


def reload(pid: int) -> None:
    os.kill(pid, signal.SIGHUP)


def stop(pid: int, timeout: float = 5.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return
        try:
            # Not our child once daemonised; poll its /proc entry (zombies are reaped by init).
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ")[1][0] == "Z":
                    return
        except OSError:
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
