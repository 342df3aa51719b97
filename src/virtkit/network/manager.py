"""NetworkManager: define, start, stop and inspect networks, and plug VMs' NICs into them.

All state lives where the kernel and the files keep it (links, the nft table, dnsmasq's pid file, JSON under the
run directory), never only in this object: a new manager, in a new process, sees and adopts what an earlier one
started. Every step is idempotent, so ``start`` also repairs a half-started network and ``stop`` a half-stopped one.
"""

from __future__ import annotations

import builtins
import fcntl
import ipaddress
import json
import os
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pyroute2 import IPRoute

from virtkit.config import defaults
from virtkit.config.machine import NicSpec
from virtkit.errors import ConfigError, HostError
from virtkit.fsutil import write_atomic
from virtkit.network import dnsmasq, links, ns
from virtkit.network.args import (
    DIRECT_NOTE,
    NetworkArg,
    Publish,
    bridge_mac,
    macvtap_name,
    parse_network_arg,
    stable_mac,
    tap_name,
)
from virtkit.network.nft import Nft, ruleset
from virtkit.network.spec import DhcpHost, NetworkSpec, PortForward
from virtkit.network.store import NetworkStore

State = Literal["active", "inactive", "degraded"]


@dataclass(frozen=True)
class NetworkInfo:
    name: str
    mode: str
    state: State
    autostart: bool
    bridge: str | None
    interface: str | None
    subnet: str | None
    dhcp_range: str | None
    domain: str | None
    forwards: list[str]
    parts: dict[str, bool]
    dnsmasq_pid: int | None
    note: str | None

    @property
    def active(self) -> bool:
        return self.state != "inactive"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Attachment:
    """One VM NIC plugged in by virtkit (kept under the run directory while the VM runs)."""

    vm: str
    index: int
    kind: Literal["tap", "macvtap"]
    ifname: str
    mac: str
    network: str | None
    bridge: str | None = None
    reserved_ip: str | None = None
    publish: list[str] = field(default_factory=list)
    device: str | None = None


@dataclass(frozen=True)
class IfAddr:
    vm: str
    ifname: str
    mac: str
    ip: str | None
    prefix: int | None
    source: str  # "lease", "reservation", "arp" or "" when nothing is known yet


class NetworkManager:
    def __init__(self, netns: str | None = None, state_dir: Path | None = None) -> None:
        ns.check_exists(netns)
        self.netns = netns
        root = state_dir or defaults.state_dir()
        self.store = NetworkStore(root / "networks")
        self.run_root = root / "run" / "net"
        self.run_root.mkdir(parents=True, exist_ok=True)
        self.nft = Nft(ns.preexec(netns))
        # One netlink socket per manager: opening one inside a namespace costs a helper process (~0.1 s).
        self._ipr_obj: IPRoute | None = None
        self._ipr_lock = threading.RLock()

    @contextmanager
    def _ipr(self) -> Iterator[IPRoute]:
        with self._ipr_lock:
            if self._ipr_obj is None:
                self._ipr_obj = ns.ipr(self.netns)
            yield self._ipr_obj

    def close(self) -> None:
        with self._ipr_lock:
            if self._ipr_obj is not None:
                self._ipr_obj.close()
                self._ipr_obj = None

    def __enter__(self) -> NetworkManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- files -------------------------------------------------------------------------------------------

    def _run(self, name: str) -> Path:
        return self.run_root / name

    def _paths(self, name: str) -> dnsmasq.Paths:
        return dnsmasq.Paths.under(self._run(name))

    def _marker(self, name: str) -> Path:
        return self._run(name) / "active"

    def _nics_file(self, vm: str) -> Path:
        return self.run_root / "nics" / f"{vm}.json"

    def _attachments(self, vm: str | None = None) -> builtins.list[Attachment]:
        files = [self._nics_file(vm)] if vm else sorted((self.run_root / "nics").glob("*.json"))
        out: builtins.list[Attachment] = []
        for f in files:
            try:
                out += [Attachment(**a) for a in json.loads(f.read_text())]
            except FileNotFoundError:
                continue
        return out

    def _save_attachments(self, vm: str, items: builtins.list[Attachment]) -> None:
        f = self._nics_file(vm)
        if items:
            write_atomic(f, json.dumps([asdict(a) for a in items], indent=2))
        else:
            f.unlink(missing_ok=True)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        # One change at a time across processes (CLI and daemon); netlink and nft are not transactions together.
        with open(self.run_root / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # ---- definitions -------------------------------------------------------------------------------------

    def define(self, spec: NetworkSpec) -> NetworkSpec:
        for other in self.store.all():
            if other.name == spec.name:
                continue
            if spec.routed and other.routed and spec.bridge == other.bridge:
                raise ConfigError(
                    f"bridge {spec.bridge!r} already belongs to network {other.name!r}",
                    hint="pick another bridge name",
                )
            if spec.subnet and other.subnet and spec.subnet.network.overlaps(other.subnet.network):
                raise ConfigError(
                    f"subnet {spec.subnet.network} overlaps network {other.name!r} ({other.subnet.network})",
                    hint="pick a subnet no other network uses",
                )
        self.store.save(spec)
        return spec

    def define_file(self, path: Path) -> NetworkSpec:
        from virtkit.network.store import spec_from_dict

        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path} does not exist", hint="pass the path of a network definition (JSON)") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})", hint="write the definition as a JSON object") from e
        return self.define(spec_from_dict(data, str(path)))

    def undefine(self, name: str) -> None:
        spec = self.store.load(name)
        if self.info(spec.name).active:
            raise ConfigError(f"network {name!r} is active", hint=f"stop it first: virtkit net-stop {name}")
        self.store.delete(name)

    def set_autostart(self, name: str, enabled: bool = True) -> NetworkSpec:
        spec = self.store.load(name).model_copy(update={"autostart": enabled})
        self.store.save(spec)
        return spec

    # ---- state -------------------------------------------------------------------------------------------

    def info(self, name: str) -> NetworkInfo:
        spec = self.store.load(name)
        parts: dict[str, bool] = {}
        pid = None
        if spec.routed:
            assert spec.bridge is not None
            with self._ipr() as ipr:
                link = links.get(ipr, spec.bridge)
            parts["bridge"] = link is not None and link.kind == "bridge"
            parts["nftables"] = self.nft.has_table(name)
            # dnsmasq runs for every routed network: DNS on the bridge even without DHCP.
            p = self._paths(name)
            pid = dnsmasq.read_pid(p.pid, p.conf)
            parts["dnsmasq"] = pid is not None
        marker = self._marker(name).exists()
        if spec.routed:
            up = sum(parts.values())
            state: State = "active" if up == len(parts) else "inactive" if up == 0 and not marker else "degraded"
        else:
            state = "active" if marker else "inactive"
        rng = f"{spec.dhcp_start}-{spec.dhcp_end}" if spec.dhcp_start else None
        fw = [f"{f.host_port}->{f.guest_ip}:{f.guest_port}/{f.proto}" for f in spec.forwards]
        return NetworkInfo(
            spec.name,
            spec.mode,
            state,
            spec.autostart,
            spec.bridge,
            spec.interface,
            str(spec.subnet) if spec.subnet else None,
            rng,
            spec.domain,
            fw,
            parts,
            pid,
            DIRECT_NOTE if spec.mode == "direct" else None,
        )

    def list(self, all: bool = False) -> builtins.list[NetworkInfo]:
        infos = [self.info(n) for n in self.store.names()]
        return infos if all else [i for i in infos if i.active]

    # ---- start / stop ------------------------------------------------------------------------------------

    def start(self, name: str) -> NetworkInfo:
        spec = self.store.load(name)
        with self._lock():
            if spec.routed:
                try:
                    self._start_routed(spec)
                except BaseException:
                    self._stop_routed(spec)
                    raise
            else:
                with self._ipr() as ipr:
                    if spec.mode == "bridge":
                        assert spec.bridge is not None
                        self._require_bridge(ipr, spec.bridge)
                    else:
                        assert spec.interface is not None
                        links.require(ipr, spec.interface, "host interface")
            self._run(name).mkdir(parents=True, exist_ok=True)
            self._marker(name).write_text(f"{time.time()}\n")
        return self.info(name)

    def _require_bridge(self, ipr: Any, name: str) -> links.Link:
        link = links.require(ipr, name, "bridge")
        if link.kind != "bridge":
            raise HostError(
                f"{name!r} is a {link.kind or 'plain'} link, not a bridge",
                hint="create a bridge (e.g. br0) holding the host NIC and use that",
            )
        return link

    def _start_routed(self, spec: NetworkSpec) -> None:
        assert spec.bridge is not None and spec.subnet is not None
        run = self._run(spec.name)
        run.mkdir(parents=True, exist_ok=True)
        run.chmod(0o755)  # dnsmasq rereads its hosts files here as nobody on SIGHUP
        with self._ipr() as ipr:
            existing = links.get(ipr, spec.bridge)
            if existing is not None and existing.kind != "bridge":
                raise HostError(f"{spec.bridge!r} exists and is not a bridge", hint="pick another bridge name")
            clash = links.overlapping(spec.subnet.network, links.routes(ipr), existing.index if existing else None)
            if clash is not None:
                with_dev = ""
                if clash.oif:
                    dev = ipr.get_links(clash.oif)[0].get_attr("IFLA_IFNAME")
                    with_dev = f" on {dev}"
                raise ConfigError(
                    f"network {spec.name!r}: subnet {spec.subnet.network} overlaps the route to {clash.dst}{with_dev}",
                    hint=f"define {spec.name!r} with a subnet that no route on this host covers",
                )
            br = links.ensure_bridge(ipr, spec.bridge, bridge_mac(spec.name))
            links.ensure_address(ipr, br.index, spec.subnet)
            # Running VMs' TAPs fell off when the bridge went away (net-stop): plug them back in.
            for a in self._attachments():
                tap = links.get(ipr, a.ifname) if a.network == spec.name and a.kind == "tap" else None
                if tap is not None and tap.master != br.index:
                    ipr.link("set", index=tap.index, master=br.index)
        if spec.mode == "nat":
            ns.write_sysctls(
                self.netns, {"net/ipv4/ip_forward": "1", f"net/ipv4/conf/{spec.bridge}/route_localnet": "1"}
            )
        self.nft.apply(ruleset(spec, self._extra_forwards(spec)))
        self._write_dnsmasq(spec, restart=True)

    def _reservations(self, spec: NetworkSpec) -> builtins.list[DhcpHost]:
        hosts = list(spec.hosts)
        macs = {h.mac for h in hosts}
        for a in self._attachments():
            if a.network == spec.name and a.reserved_ip and a.mac not in macs:
                hosts.append(DhcpHost(mac=a.mac, ip=ipaddress.IPv4Address(a.reserved_ip), hostname=_host(a.vm)))
        return hosts

    def _extra_forwards(self, spec: NetworkSpec) -> builtins.list[PortForward]:
        out = []
        for a in self._attachments():
            if a.network == spec.name and a.reserved_ip:
                for text in a.publish:
                    p = _publish(text)
                    out.append(
                        PortForward(
                            proto=p.proto,
                            host_port=p.host_port,
                            guest_ip=ipaddress.IPv4Address(a.reserved_ip),
                            guest_port=p.guest_port,
                        )
                    )
        return out

    def _write_dnsmasq(self, spec: NetworkSpec, restart: bool) -> None:
        paths = self._paths(spec.name)
        hosts = self._reservations(spec)
        write_atomic(paths.hostsfile, dnsmasq.hostsfile(hosts))
        write_atomic(paths.hostsfile.with_name("dns-hosts"), dnsmasq.dns_hosts(hosts))
        conf = dnsmasq.config(spec, paths)
        pid = dnsmasq.read_pid(paths.pid, paths.conf)
        same = paths.conf.exists() and paths.conf.read_text() == conf
        if pid is not None and (same or not restart):
            dnsmasq.reload(pid)  # rereads dhcp-hostsfile and addn-hosts
            return
        if pid is not None:
            dnsmasq.stop(pid)
        write_atomic(paths.conf, conf)
        paths.leases.touch()
        dnsmasq.start(paths, ns.preexec(self.netns))

    def stop(self, name: str) -> NetworkInfo:
        spec = self.store.load(name)
        with self._lock():
            if spec.routed:
                self._stop_routed(spec)
            self._marker(name).unlink(missing_ok=True)
            self._clean_run(name)
        return self.info(name)

    def _stop_routed(self, spec: NetworkSpec) -> None:
        assert spec.bridge is not None
        paths = self._paths(spec.name)
        pid = dnsmasq.read_pid(paths.pid, paths.conf)
        if pid is not None:
            dnsmasq.stop(pid)
        from virtkit.network.nft import delete_table

        self.nft.apply(delete_table(spec.name))
        with self._ipr() as ipr:
            links.delete(ipr, spec.bridge)
        self._clean_run(spec.name)

    def _clean_run(self, name: str) -> None:
        run = self._run(name)
        if not run.exists():
            return
        for f in run.iterdir():
            if f.name != "active":
                f.unlink(missing_ok=True)
        if not any(run.iterdir()):
            run.rmdir()

    def autostart_all(self) -> builtins.list[str]:
        """Start every autostart network that is not fully up (the daemon calls this when it starts)."""
        started = []
        for spec in self.store.all():
            if spec.autostart and self.info(spec.name).state != "active":
                self.start(spec.name)
                started.append(spec.name)
        return started

    def adopt(self) -> builtins.list[NetworkInfo]:
        """Repair networks marked active whose parts went missing (a dnsmasq that died, a lost table)."""
        out = []
        for name in self.store.names():
            info = self.info(name)
            if info.state == "degraded":
                info = self.start(name)
            out.append(info)
        return out

    # ---- leases and addresses ----------------------------------------------------------------------------

    def leases(self, name: str) -> builtins.list[dnsmasq.Lease]:
        spec = self.store.load(name)
        if not spec.routed:
            raise ConfigError(
                f"network {name!r} is a {spec.mode} network: the outside network's DHCP server holds its leases",
                hint="use `virtkit domifaddr VM` (agent or ARP)",
            )
        try:
            text = self._paths(name).leases.read_text()
        except FileNotFoundError:
            return []
        now = int(time.time())
        return [lease for lease in dnsmasq.parse_leases(text) if lease.expiry == 0 or lease.expiry > now]

    def domifaddr(self, vm: str, agent_interfaces: Sequence[dict[str, Any]] | None = None) -> builtins.list[IfAddr]:
        """Addresses of a VM's NICs: DHCP leases, then reservations, then the guest agent, then the ARP table.

        ``agent_interfaces`` is the agent's ``guest-network-get-interfaces`` answer when the VM has an agent
        (bridge and direct NICs lease from a DHCP server virtkit cannot read).
        """
        from_agent = _agent_addrs(agent_interfaces or [])
        out = []
        arp: dict[str, ipaddress.IPv4Address] | None = None
        for a in sorted(self._attachments(vm), key=lambda a: a.index):
            ip: str | None = None
            prefix: int | None = None
            source = ""
            spec = self.store.load(a.network) if a.network and self.store.exists(a.network) else None
            if spec is not None and spec.routed and spec.subnet is not None:
                prefix = spec.subnet.network.prefixlen
                found = [lease for lease in self.leases(spec.name) if lease.mac == a.mac]
                if found:
                    ip, source = str(max(found, key=lambda lease: lease.expiry).ip), "lease"
                elif a.reserved_ip:
                    ip, source = a.reserved_ip, "reservation"
            if ip is None and a.mac in from_agent:
                ip, prefix = from_agent[a.mac]
                source = "agent"
            if ip is None:
                if arp is None:
                    with self._ipr() as ipr:
                        arp = links.neighbours(ipr)
                if a.mac in arp:
                    ip, source = str(arp[a.mac]), "arp"
            out.append(IfAddr(vm, a.ifname, a.mac, ip, prefix, source))
        return out

    # ---- VM NICs -----------------------------------------------------------------------------------------

    def attach_nic(
        self, vm: str, index: int, network_arg: str | NetworkArg, publish: Sequence[str | Publish] = ()
    ) -> NicSpec:
        """Create the TAP (or macvtap) for NIC ``index`` of ``vm`` and plug it in; returns what the engine needs."""
        arg = parse_network_arg(network_arg) if isinstance(network_arg, str) else network_arg
        pubs = [p if isinstance(p, Publish) else _publish(p) for p in publish]
        mac = stable_mac(vm, index)
        if arg.kind == "none":
            raise ConfigError("--network none has no NIC to attach", hint="leave that NIC out of the machine")
        if arg.kind == "network":
            assert arg.name is not None
            spec = self.store.load(arg.name)
            if self.info(spec.name).state != "active":
                if not spec.autostart:
                    raise ConfigError(
                        f"network {spec.name!r} is not active",
                        hint=f"start it: virtkit net-start {spec.name}",
                    )
                self.start(spec.name)
            if spec.mode == "bridge":
                arg = NetworkArg("bridge", spec.bridge)
            elif spec.mode == "direct":
                arg = NetworkArg("direct", spec.interface, spec.macvtap_mode)
        if pubs and not (arg.kind == "network" and self.store.load(str(arg.name)).mode == "nat"):
            raise ConfigError(
                "--publish needs a NIC on a nat network",
                hint="guests on bridge and direct networks are reachable at their own address",
            )
        with self._lock():
            self._detach(vm, index)
            att = self._plug(vm, index, arg, mac, pubs)
            items = [a for a in self._attachments(vm) if a.index != index] + [att]
            try:
                self._save_attachments(vm, items)
                if att.network and (att.reserved_ip or att.publish):
                    self._refresh(self.store.load(att.network))
            except BaseException:
                self._unplug(att)
                self._save_attachments(vm, [a for a in items if a.index != index])
                raise
        device = Path(att.device) if att.device else None
        return NicSpec(kind=att.kind, ifname=att.ifname, mac=att.mac, device=device)

    def _plug(self, vm: str, index: int, arg: NetworkArg, mac: str, pubs: builtins.list[Publish]) -> Attachment:
        with self._ipr() as ipr:
            if arg.kind == "direct":
                assert arg.name is not None
                name = macvtap_name(vm, index)
                link = links.create_macvtap(ipr, name, arg.name, arg.mode, mac)
                try:
                    device = self._mknod_macvtap(name, link.index)
                except BaseException:
                    links.delete(ipr, name)
                    raise
                return Attachment(vm, index, "macvtap", name, mac, None, device=str(device))
            if arg.kind == "bridge":
                assert arg.name is not None
                br = self._require_bridge(ipr, arg.name)
                name = tap_name(vm, index)
                links.create_tap(ipr, name, br.index)
                return Attachment(vm, index, "tap", name, mac, None, bridge=arg.name)
            assert arg.name is not None
            spec = self.store.load(arg.name)
            assert spec.bridge is not None
            reserved = self._reserve(spec, mac, pubs) if pubs else None
            br = self._require_bridge(ipr, spec.bridge)
            name = tap_name(vm, index)
            links.create_tap(ipr, name, br.index)
            return Attachment(
                vm,
                index,
                "tap",
                name,
                mac,
                spec.name,
                bridge=spec.bridge,
                reserved_ip=str(reserved) if reserved else None,
                publish=[str(p) for p in pubs],
            )

    def _reserve(self, spec: NetworkSpec, mac: str, pubs: builtins.list[Publish]) -> ipaddress.IPv4Address:
        """A fixed address for a NIC with published ports (forwards need a guest address that never changes)."""
        taken_ports = {(f.proto, f.host_port) for f in [*spec.forwards, *self._extra_forwards(spec)]}
        for p in pubs:
            if (p.proto, p.host_port) in taken_ports:
                raise ConfigError(
                    f"host port {p.host_port}/{p.proto} is already published on {spec.name!r}",
                    hint="pick another host port",
                )
        for h in spec.hosts:
            if h.mac == mac:
                return h.ip
        if spec.dhcp_start is None or spec.dhcp_end is None or spec.subnet is None:
            raise ConfigError(
                f"network {spec.name!r} has no DHCP range to reserve an address from",
                hint="add dhcp_start/dhcp_end to its definition",
            )
        used = {h.ip for h in self._reservations(spec)} | {
            lease.ip for lease in self.leases(spec.name) if lease.mac != mac
        }
        for lease in self.leases(spec.name):
            if lease.mac == mac:  # keep the address the guest already had
                return lease.ip
        # From the top of the range down: dynamic leases are handed out from the bottom.
        ip = spec.dhcp_end
        while int(ip) >= int(spec.dhcp_start):
            if ip not in used:
                return ip
            ip = ip - 1
        raise ConfigError(f"network {spec.name!r} has no free address left", hint="widen its DHCP range")

    def _mknod_macvtap(self, name: str, ifindex: int) -> Path:
        """Our own /dev/tapN node: there is no udev for links made inside a namespace."""
        major, minor = ns.macvtap_devnum(self.netns, name, ifindex)
        dev = self.run_root / "dev" / name
        dev.parent.mkdir(parents=True, exist_ok=True)
        dev.unlink(missing_ok=True)
        os.mknod(dev, 0o600 | stat.S_IFCHR, os.makedev(major, minor))
        return dev

    def macvtap_device(self, vm: str, index: int) -> Path:
        """The character device to open for a macvtap NIC (its fd goes to QEMU as ``-netdev tap,fd=N``)."""
        for a in self._attachments(vm):
            if a.index == index and a.device:
                return Path(a.device)
        raise ConfigError(f"{vm} has no macvtap NIC {index}", hint="attach it first")

    def _refresh(self, spec: NetworkSpec) -> None:
        """Re-apply reservations and forwards of a running network after VMs came or went."""
        if not spec.routed or self.info(spec.name).state == "inactive":
            return
        if spec.mode == "nat":
            self.nft.apply(ruleset(spec, self._extra_forwards(spec)))
        self._write_dnsmasq(spec, restart=False)

    def detach_nic(self, vm: str, index: int) -> None:
        with self._lock():
            self._detach(vm, index)

    def detach_vm(self, vm: str) -> None:
        """Remove every NIC virtkit plugged in for ``vm`` (call when the VM has stopped)."""
        with self._lock():
            for a in self._attachments(vm):
                self._detach(vm, a.index)

    def _detach(self, vm: str, index: int) -> None:
        items = self._attachments(vm)
        gone = [a for a in items if a.index == index]
        if not gone:
            return
        rest = [a for a in items if a.index != index]
        self._save_attachments(vm, rest)
        for a in gone:
            self._unplug(a)
            if a.network and (a.reserved_ip or a.publish) and self.store.exists(a.network):
                self._refresh(self.store.load(a.network))

    def _unplug(self, a: Attachment) -> None:
        with self._ipr() as ipr:
            links.delete(ipr, a.ifname)
        if a.device:
            Path(a.device).unlink(missing_ok=True)

    def attachments(self, vm: str | None = None) -> builtins.list[Attachment]:
        return self._attachments(vm)


def _agent_addrs(interfaces: Sequence[dict[str, Any]]) -> dict[str, tuple[str, int | None]]:
    """MAC -> (first IPv4 address, prefix) from a guest-network-get-interfaces answer; junk is skipped."""
    out: dict[str, tuple[str, int | None]] = {}
    for itf in interfaces:
        mac = str(itf.get("hardware-address", "")).lower() if isinstance(itf, dict) else ""
        for addr in itf.get("ip-addresses") or [] if mac else []:
            if not isinstance(addr, dict) or addr.get("ip-address-type") != "ipv4":
                continue
            try:
                ip = str(ipaddress.IPv4Address(str(addr.get("ip-address"))))
            except ValueError:
                continue
            prefix = addr.get("prefix")
            out.setdefault(mac, (ip, prefix if isinstance(prefix, int) else None))
    return out


def _publish(text: str) -> Publish:
    from virtkit.network.args import parse_publish

    return parse_publish(text)


def _host(vm: str) -> str | None:
    """The VM name as a DNS label, when it is one."""
    from virtkit.network.spec import HOSTNAME_RE

    return vm if HOSTNAME_RE.fullmatch(vm) else None
