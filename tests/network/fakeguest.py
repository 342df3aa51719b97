"""A stand-in guest for network tests: what QEMU does with a NIC, done in a few lines.

Opens the VM's TAP by name (or its macvtap character device) in the host namespace, exactly like QEMU's
``-netdev tap,ifname=X`` / ``fd=N``, creates a TAP called eth0 inside the guest namespace with the VM's MAC, and
copies frames both ways. The guest namespace then runs real DHCP clients, pings and HTTP.

usage: fakeguest.py HOST_NS GUEST_NS tap IFNAME|dev PATH MAC
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import sys

from pyroute2 import IPRoute

from virtkit.network.ns import enter

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000


def setiff(fd: int, name: str) -> None:
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI))


def main() -> None:
    host_ns, guest_ns, kind, target, mac = sys.argv[1:6]
    enter(host_ns)
    if kind == "tap":
        a = os.open("/dev/net/tun", os.O_RDWR)
        setiff(a, target)
    else:
        a = os.open(target, os.O_RDWR)
        setiff(a, "")  # macvtap: drop the vnet header it starts with
    enter(guest_ns)
    b = os.open("/dev/net/tun", os.O_RDWR)
    setiff(b, "eth0")
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname="eth0")[0]
        ipr.link("set", index=idx, address=mac, state="up")
        lo = ipr.link_lookup(ifname="lo")[0]
        ipr.link("set", index=lo, state="up")
    print("ready", flush=True)
    peer = {a: b, b: a}
    while True:
        ready, _, _ = select.select([a, b], [], [])
        for fd in ready:
            try:
                os.write(peer[fd], os.read(fd, 65536))
            except OSError:
                continue


if __name__ == "__main__":
    main()
