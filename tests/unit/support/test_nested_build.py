"""The pure parts of the nested harness: module order checks, the command script, engine command lines."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.support import nested

from virtkit.errors import ImageError


def ko(depends: str) -> bytes:
    return b"\0license=GPL\0depends=" + depends.encode() + b"\0retpoline=Y\0intree=Y\0"


# The depends= lines Debian 6.1's modules carry (read from linux-image-6.1.0-57-amd64).
REAL = {
    "virtio_ring": "", "virtio": "virtio_ring", "virtio_pci_legacy_dev": "", "virtio_pci_modern_dev": "",
    "virtio_pci": "virtio_ring,virtio_pci_modern_dev,virtio_pci_legacy_dev,virtio", "netfs": "",
    "fscache": "netfs", "9pnet": "", "9pnet_virtio": "virtio,9pnet,virtio_ring", "9p": "9pnet,fscache,netfs",
    "irqbypass": "", "kvm": "irqbypass", "ccp": "", "kvm_amd": "kvm,ccp",
}  # fmt: skip


def test_depends_is_read_from_modinfo_with_kernel_names() -> None:
    assert nested._depends(ko("kvm,ccp")) == ("kvm", "ccp")
    assert nested._depends(ko("kvm-amd")) == ("kvm_amd",)
    assert nested._depends(ko("")) == ()


def test_l1_modules_load_each_after_its_dependencies() -> None:
    assert {m.replace("-", "_") for m in nested.L1_MODULES} == set(REAL)
    order = nested._module_order({k: ko(v) for k, v in REAL.items()})
    assert sorted(order) == sorted(REAL)
    for name, deps in REAL.items():
        for dep in filter(None, deps.split(",")):
            assert order.index(dep) < order.index(name), (dep, name)


def test_a_dependency_outside_the_list_is_refused() -> None:
    mods = {k: ko(v) for k, v in REAL.items() if k != "ccp"}
    with pytest.raises(ImageError, match="'ccp' not found \\(needed by kvm_amd\\)"):
        nested._module_order(mods)


def test_command_script_quotes_argv_and_clears_the_environment(tmp_path: Path) -> None:
    script = nested._cmd_script(["printf", "%s|%s|%s\\n", "a b", "$HOME", "it's"], {"HOME": "/tmp", "X": "1 2"}, "/")
    script = script.replace(nested.L1_SHARE, str(tmp_path))  # run it here, against a stand-in share
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    assert proc.stdout == "a b|$HOME|it's\n"
    assert (tmp_path / "rc").read_text().strip() == "0"
    env_script = nested._cmd_script(["sh", "-c", 'echo "$X;${HOME-unset}"; exit 4'], {"X": "1 2"}, "/")
    env_script = env_script.replace(nested.L1_SHARE, str(tmp_path))
    proc = subprocess.run(["sh", "-c", env_script], capture_output=True, text=True, check=True)
    assert proc.stdout == "1 2;unset\n"
    assert (tmp_path / "rc").read_text().strip() == "4"


def test_l2_command_knows_both_engines_and_refuses_others(tmp_path: Path) -> None:
    art = nested.BootArtefacts(tmp_path / "bz", tmp_path / "initrd", "6.1.0-9-cloud-amd64")
    qemu = nested.l2_command("qemu", art)
    assert "-enable-kvm" in qemu and qemu[qemu.index("-append") + 1] == nested.L2_CMDLINE
    assert "reboot=t" in nested.L2_CMDLINE and "quiet" in nested.L2_CMDLINE
    native = nested.l2_command("native", art, memory_mib=128)
    assert native[1:3] == ["-m", "virtkit.engines.native_main"]
    assert json.loads(native[3])["vmm"]["memory_mib"] == 128
    with pytest.raises(ValueError, match="unknown engine 'xen'"):
        nested.l2_command("xen", art)


def test_binds_keep_only_outermost_existing_dirs_under_tmp_and_run(tmp_path: Path) -> None:
    work = Path("/tmp") / f"vk-binds-{tmp_path.name}"
    (work / "a" / "b").mkdir(parents=True)
    (work / "a" / "f.txt").write_text("x")
    try:
        got = nested._binds([work / "a" / "b", work / "a" / "f.txt", work / "a", "/usr/bin", "/tmp", "/nonexistent"])
        assert got == [str((work / "a").resolve())]
        assert nested._binds(["/usr", "/work"]) == []
    finally:
        shutil.rmtree(work)


def lines(*pairs: tuple[float, str]) -> list[nested.ConsoleLine]:
    return [nested.ConsoleLine(t, text) for t, text in pairs]


def test_l2_boots_are_timed_from_their_start_line_to_the_marker() -> None:
    console = lines(
        (10.0, "virtkit-l1: ready 6.1"),
        (10.5, "virtkit-bench: start qemu 0"),
        (18.0, "[    0.1] some kernel error"),
        (20.5, "virtkit-l2: init reached\r"),
        (20.6, "6.1.0-57-cloud-amd64"),
        (20.9, "virtkit-bench: end qemu 0 rc=0"),
        (21.0, "virtkit-bench: start native 0"),
        (50.0, "echo virtkit-l2: init reached"),  # not the marker line itself
        (60.0, "virtkit-bench: end native 0 rc=1"),
    )
    qemu, native = nested.l2_boots(console)
    assert (qemu.engine, qemu.run, qemu.returncode) == ("qemu", 0, 0)
    assert qemu.seconds == pytest.approx(10.0)
    assert "6.1.0-57-cloud-amd64" in qemu.output and "bench" not in qemu.output
    assert (native.engine, native.seconds, native.returncode) == ("native", None, 1)


def test_l2_boots_ignore_an_end_without_its_start() -> None:
    console = lines((1.0, "virtkit-bench: start qemu 0"), (2.0, "virtkit-bench: end qemu 1 rc=0"))
    assert nested.l2_boots(console) == []


def test_public_names_exist() -> None:
    assert all(hasattr(nested, name) for name in nested.__all__)
