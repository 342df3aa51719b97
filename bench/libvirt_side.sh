#!/bin/sh
# libvirt's own default network, for bench/network.py. Runs inside the benchmark's network namespace and a
# private mount namespace (ip netns exec NS unshare -m --propagation private sh bench/libvirt_side.sh ROUNDS),
# with tmpfs over libvirt's state, so nothing of it touches the host's namespaces or files.
set -eu
ROUNDS=${1:-5}
for d in /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt; do
    mkdir -p "$d"
    mount -t tmpfs tmpfs "$d"
done
mkdir -p /var/lib/libvirt/dnsmasq /var/lib/libvirt/network
libvirtd --pid-file /run/libvirt/bench-libvirtd.pid >/run/libvirt/bench-libvirtd.log 2>&1 &
LPID=$!
trap 'kill $LPID 2>/dev/null || true; wait $LPID 2>/dev/null || true' EXIT
i=0
while ! [ -S /run/libvirt/libvirt-sock ]; do
    i=$((i + 1)); [ $i -lt 600 ] || { echo "error libvirtd did not start"; cat /run/libvirt/bench-libvirtd.log; exit 1; }
    sleep 0.1
done
VIRSH="virsh -q -c qemu:///system"
$VIRSH net-list --all >/dev/null
$VIRSH net-destroy default >/dev/null 2>&1 || true
n=0
while [ $n -lt "$ROUNDS" ]; do
    t0=$(date +%s%N); $VIRSH net-start default >/dev/null
    t1=$(date +%s%N); $VIRSH net-destroy default >/dev/null
    t2=$(date +%s%N)
    echo "round $(( (t1 - t0) / 1000 )) $(( (t2 - t1) / 1000 ))"
    n=$((n + 1))
done
$VIRSH net-start default >/dev/null
echo "ready $(virsh --version)"
read -r _line || true
$VIRSH net-destroy default >/dev/null
echo "stopped"
