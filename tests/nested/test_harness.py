"""The nested harness proven with QEMU itself: L1 gets a hardware-style /dev/kvm, and QEMU-KVM boots L2 on it."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import textwrap

import psutil
import pytest
from tests.support import nested

from virtkit.arch.x86_64.pvh import has_pvh_entry
from virtkit.errors import GuestTimeout

pytestmark = pytest.mark.nested

KVM_PROBE = textwrap.dedent(
    f"""
    import fcntl, json, os, shutil, subprocess
    fd = os.open("/dev/kvm", os.O_RDWR)
    api = fcntl.ioctl(fd, 0xAE00, 0)            # KVM_GET_API_VERSION
    vm = fcntl.ioctl(fd, 0xAE01, 0)             # KVM_CREATE_VM: a real VM fd, not just an open device
    flags = next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split()
    mods = sorted(l.split()[0] for l in open("/proc/modules"))
    # The host's QEMU, seen through 9p, must find all its shared libraries in the chroot.
    qemu = shutil.which("qemu-system-x86_64")
    ldd = subprocess.run(["ldd", qemu], capture_output=True, text=True).stdout
    missing = [l.strip() for l in ldd.splitlines() if "not found" in l]
    report = {{"api": api, "vm_fd": vm, "svm": "svm" in flags, "npt": "npt" in flags, "modules": mods,
              "qemu_libs": ldd.count("=>"), "qemu_missing_libs": missing}}
    json.dump(report, open("{nested.L1_OUT}/kvm.json", "w"))
    print("kvm-probe", json.dumps(report))
    """
)


def test_l1_has_a_working_kvm_with_svm(l1_ready: nested.BootArtefacts) -> None:
    res = nested.run_in_l1([sys.executable, "-c", KVM_PROBE], timeout=240)
    t = res.timings
    print(f"L1 ready {t.ready_s:.1f} s, command {t.command_s:.1f} s, total {t.total_s:.1f} s")
    assert res.returncode == 0, res.output
    report = json.loads(res.files["kvm.json"])
    assert report["api"] == 12
    assert report["vm_fd"] >= 0
    assert report["svm"] and report["npt"]
    assert {"kvm", "kvm_amd", "9p", "9pnet_virtio"} <= set(report["modules"])
    assert report["qemu_libs"] > 10 and report["qemu_missing_libs"] == []
    assert "kvm-probe" in res.output
    # The same line came over the serial console, time-stamped by the host, after L1 said it was ready.
    probe_line = next(c for c in res.console if c.text.startswith("kvm-probe"))
    assert res.timings.ready_s <= probe_line.t <= res.timings.total_s


def test_l1_boots_its_kernel_through_pvh(l1_ready: nested.BootArtefacts) -> None:
    # The unwrapped vmlinux (PVH entry) is what saves the emulated decompression; a bzImage here means it fell back.
    assert l1_ready.kernel.name == "vmlinux"
    assert has_pvh_entry(l1_ready.kernel.read_bytes())


def test_command_failure_and_output_come_back(l1_ready: nested.BootArtefacts) -> None:
    res = nested.run_in_l1(
        ["/bin/sh", "-c", 'echo "out $GREETING"; echo err >&2; touch /ro-test 2>/dev/null || echo ro; exit 7'],
        timeout=180,
        env={"GREETING": "hi there"},
    )
    assert res.returncode == 7
    assert res.output.splitlines() == ["out hi there", "err", "ro"]


def test_timeout_kills_qemu_and_cleans_up(l1_ready: nested.BootArtefacts) -> None:
    before = set(os.listdir(tempfile.gettempdir()))
    with pytest.raises(GuestTimeout, match="did not finish within 5 s"):
        nested.run_in_l1(["sleep", "600"], timeout=5)
    me = psutil.Process()
    assert not [p for p in me.children(recursive=True) if "qemu" in p.name()]
    assert {n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith("virtkit-l1-")} == set()


def test_qemu_kvm_in_l1_boots_the_l2_kernel(l1_ready: nested.BootArtefacts) -> None:
    l2 = nested.l2_artefacts()
    boots, res = nested.boot_l2_in_l1(["qemu"], 1, timeout=300)
    print(f"L1 ready {res.timings.ready_s:.1f} s; L2 boots (host clock): {[b.seconds for b in boots]}")
    [boot] = boots
    assert boot.returncode == 0, boot.output
    assert boot.seconds is not None, boot.output
    lines = [ln.strip() for ln in boot.output.splitlines()]
    assert nested.L2_MARKER in lines
    # uname -r printed by L2 right after the marker: Debian's cloud kernel, not L1's generic one.
    assert lines[lines.index(nested.L2_MARKER) + 1] == l2.release
    assert l2.release.endswith("-cloud-amd64")
