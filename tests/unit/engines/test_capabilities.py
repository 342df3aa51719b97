"""Optional machine abilities: a method on every engine's machine, refused with a typed error and a hint
where the engine lacks it, and listed by capabilities() where it has it."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.support.fake_engine import FakeEngine

from virtkit.config.machine import BootSpec, DiskSpec, MachineSpec, NicSpec
from virtkit.engines.base import Capability, Machine, MachineBase, Technique
from virtkit.engines.native import NativeMachine
from virtkit.engines.qemu import QemuMachine, snapshot_nodes
from virtkit.errors import EngineError, Unsupported

SRC = Path(__file__).resolve().parents[3] / "src" / "virtkit"

# each capability and a call that exercises it
USES: dict[Capability, list[Callable[[Machine], object]]] = {
    Capability.SNAPSHOT: [
        lambda m: m.snapshot_save("s"),
        lambda m: m.snapshot_load("s"),
        lambda m: m.snapshot_delete("s"),
    ],
    Capability.STATS: [lambda m: m.stats()],
    Capability.CONSOLE_INPUT: [lambda m: m.console_write(b"x")],
    Capability.DISK_HOTPLUG: [lambda m: m.add_disk(DiskSpec(path=Path("/d.img"))), lambda m: m.remove_disk("vd1")],
    Capability.NIC_HOTPLUG: [lambda m: m.add_nic(NicSpec(kind="user")), lambda m: m.remove_nic("net1")],
    Capability.MIGRATION: [lambda m: m.migrate("unix:/tmp/x")],
}


def assert_refuses_what_it_lacks(m: Machine) -> None:
    missing = set(Capability) - m.capabilities()
    assert missing, "every engine lacks something yet: hotplug and migration come later"
    for cap in missing:
        for use in USES[cap]:
            with pytest.raises(Unsupported) as e:
                use(m)
            assert e.value.hint, f"{cap} refused without a hint"
            assert m.engine in e.value.message


def spec(disks: tuple[DiskSpec, ...] = ()) -> MachineSpec:
    return MachineSpec(name="vm1", boot=BootSpec(kernel=Path("/k")), disks=disks)


@pytest.fixture
def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_qemu_saves_memory_only_when_every_writable_disk_is_qcow2(tmp_path: Path) -> None:
    q = DiskSpec(path=tmp_path / "a.qcow2", format="qcow2")
    raw = DiskSpec(path=tmp_path / "b.raw")
    ro_raw = DiskSpec(path=tmp_path / "c.raw", readonly=True)
    assert snapshot_nodes(spec((q, ro_raw, q))) == ["disk0", "disk2"]
    assert snapshot_nodes(spec((q, raw))) == "a writable raw disk"
    assert snapshot_nodes(spec()) == "none"


def test_qemu_machine_without_qcow2_refuses_snapshots_with_the_fix(tmp_path: Path, dead_pid: int) -> None:
    m = QemuMachine("vm1", tmp_path, Technique.BINARY_TRANSLATION, dead_pid, snapshot_nodes="a writable raw disk")
    assert isinstance(m, Machine)
    assert m.capabilities() == {Capability.STATS, Capability.CONSOLE_INPUT}
    with pytest.raises(Unsupported, match="only into qcow2 disks, and vm1 has a writable raw disk") as e:
        m.snapshot_save("s1")
    assert "--disk-only" in (e.value.hint or "")
    assert_refuses_what_it_lacks(m)


def test_qemu_machine_with_qcow2_disks_lists_snapshots(tmp_path: Path, dead_pid: int) -> None:
    m = QemuMachine("vm1", tmp_path, Technique.BINARY_TRANSLATION, dead_pid, snapshot_nodes=["disk0"])
    assert Capability.SNAPSHOT in m.capabilities()
    with pytest.raises(EngineError, match="not running") as e:  # supported, but the machine is gone
        m.snapshot_save("s1")
    assert not isinstance(e.value, Unsupported)


def test_qemu_console_socket_is_part_of_the_interface(tmp_path: Path, dead_pid: int) -> None:
    m = QemuMachine("vm1", tmp_path, Technique.BINARY_TRANSLATION, dead_pid)
    assert m.console_socket == tmp_path / "console.sock"


@pytest.fixture
def native(tmp_path: Path) -> Iterator[NativeMachine]:
    proc = subprocess.Popen(["sleep", "60"])
    m = NativeMachine("vm1", Technique.PVM, proc, tmp_path)
    yield m
    proc.kill()
    proc.wait()


def test_native_machine_has_console_input_and_stats_only(native: NativeMachine, tmp_path: Path) -> None:
    assert isinstance(native, Machine)
    assert native.capabilities() == {Capability.CONSOLE_INPUT, Capability.STATS}
    assert native.console_socket == tmp_path / "console.sock"
    with pytest.raises(Unsupported, match="native engine cannot save guest memory"):
        native.snapshot_save("s1")
    assert_refuses_what_it_lacks(native)


def test_fake_engine_meets_the_interface(tmp_path: Path) -> None:
    m = FakeEngine().start(spec(), tmp_path)
    try:
        assert isinstance(m, Machine)
        assert Capability.SNAPSHOT in m.capabilities()
        assert m.stats().block[0].device == "vda"
        assert m.console_write(b"typed") == 5 and m.console().endswith("typed")
        assert_refuses_what_it_lacks(m)
    finally:
        m.destroy()


def test_base_refuses_everything_with_a_hint() -> None:
    class Bare(MachineBase):
        name = "b"
        engine = "bare"

    bare = Bare()
    assert bare.capabilities() == frozenset() and bare.console_socket is None
    for uses in USES.values():
        for use in uses:
            with pytest.raises(Unsupported, match=r"the bare engine cannot .* \(b\)") as e:
                use(bare)  # type: ignore[arg-type]
            assert e.value.hint


def test_the_supervisor_never_reaches_around_the_interface() -> None:
    source = (SRC / "daemon" / "vmproc.py").read_text()
    assert not re.search(r"(get|has)attr\((m|self\.machine|agent)\b", source), "vmproc.py probes a machine"
    for leak in ("_qmp", "qmp", ".engine ==", "QemuMachine", "NativeMachine"):
        assert leak not in source, f"vmproc.py uses {leak!r}"
