#!/bin/sh
# A private libvirtd for bench/control.py, as Debian's libvirt-daemon-system ships it, run on a host without
# systemd. Runs in its own mount and network namespaces (unshare -m -n) with tmpfs over libvirt's state, so
# nothing of it touches the host's files, links or firewall. Then runs "$@" (the benchmark's libvirt side).
#
# What differs from the packaged configuration, and why:
#   - libvirtd is started directly (no systemd socket activation) and stays up for the whole run;
#   - virtlogd is started directly too, as systemd would have started it on demand (QEMU's stdio goes
#     through it, which is libvirt's default stdio_handler);
#   - the "default" network is not autostarted (the guests here have no NIC, as the virtkit guests), and
#     domain definitions go to a tmpfs over /etc/libvirt/qemu;
#   - QEMU runs as root (qemu.conf user/group), as virtkit's engine does, so no chown of kernel/initrd.
set -eu
for d in /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt /etc/libvirt/qemu; do
    mkdir -p "$d"
    mount -t tmpfs tmpfs "$d"
done
# /etc/libvirt/qemu is where libvirt keeps persistent domain definitions (and the network autostart links)
mkdir -p /var/lib/libvirt/qemu /var/log/libvirt/qemu /var/cache/libvirt/qemu /etc/libvirt/qemu/networks
CONF=/run/libvirt/bench-qemu.conf
cp /etc/libvirt/qemu.conf "$CONF"
printf 'user = "root"\ngroup = "root"\n' >>"$CONF"
mount --bind "$CONF" /etc/libvirt/qemu.conf
ip link set lo up 2>/dev/null || true
cleanup() {
    virsh -q -c qemu:///system list --name 2>/dev/null | while read -r d; do
        [ -n "$d" ] && virsh -q -c qemu:///system destroy "$d" >/dev/null 2>&1
    done
    [ -f /run/libvirt/bench-libvirtd.pid ] && kill "$(cat /run/libvirt/bench-libvirtd.pid)" 2>/dev/null
    [ -f /run/libvirt/bench-virtlogd.pid ] && kill "$(cat /run/libvirt/bench-virtlogd.pid)" 2>/dev/null
    # libvirt's cgroup partition (no systemd: /machine under each v1 controller), once empty
    for c in /sys/fs/cgroup/*/machine; do rmdir "$c" 2>/dev/null; done
    return 0
}
trap cleanup EXIT
virtlogd -d -p /run/libvirt/bench-virtlogd.pid
libvirtd -d --pid-file /run/libvirt/bench-libvirtd.pid
i=0
while ! [ -S /run/libvirt/libvirt-sock ]; do
    i=$((i + 1)); [ $i -lt 600 ] || { echo "error: libvirtd did not start" >&2; exit 1; }
    sleep 0.1
done
"$@"
