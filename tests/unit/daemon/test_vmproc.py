"""A VM's supervisor over its control socket: the daemon's client (ctl) against a machine from the fake engine."""

from __future__ import annotations

import base64
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.fake_engine import FakeMachine

from virtkit.config.machine import BootSpec, MachineSpec
from virtkit.daemon import ctl
from virtkit.daemon.vmproc import CTL, Supervisor
from virtkit.engines.base import Capability, MachineBase, VmState
from virtkit.errors import ConfigError, Unsupported


class NoSnapshots(FakeMachine):
    """A machine whose engine cannot save memory."""

    def capabilities(self) -> frozenset[Capability]:
        return super().capabilities() - {Capability.SNAPSHOT}

    snapshot_save = MachineBase.snapshot_save  # type: ignore[assignment]


@pytest.fixture
def supervisor() -> Iterator[Supervisor]:
    with tempfile.TemporaryDirectory(prefix="vmp-", dir="/tmp") as d:  # short: unix socket paths
        vmdir = Path(d)
        (vmdir / "vm.json").write_text(json.dumps({"name": "vm1"}))
        sup = Supervisor(vmdir)
        sup.machine = NoSnapshots(MachineSpec(name="vm1", boot=BootSpec(kernel=Path("/k"))), vmdir)
        sup.serve()
        yield sup
        sup.finish(VmState.SHUTOFF, "test over")


def test_status_reports_the_engines_capabilities(supervisor: Supervisor) -> None:
    st = ctl.call(supervisor.vmdir / CTL, "status")
    assert st["engine"] == "fake" and st["state"] == "running"
    assert st["capabilities"] == ["console-input", "stats"]


def test_a_missing_capability_reaches_the_daemon_as_unsupported_with_its_hint(supervisor: Supervisor) -> None:
    with pytest.raises(Unsupported, match="fake engine cannot save guest memory") as e:
        ctl.call(supervisor.vmdir / CTL, "snapshot_save", {"name": "s1"})
    assert e.value.hint and "--disk-only" in e.value.hint
    with pytest.raises(ConfigError, match="unknown supervisor op"):
        ctl.call(supervisor.vmdir / CTL, "teleport")


def test_stats_and_console_input_through_the_interface(supervisor: Supervisor) -> None:
    st = ctl.call(supervisor.vmdir / CTL, "stats")
    assert st["block"][0]["device"] == "vda" and st["net"][0]["source"] == "guest agent"
    data = base64.b64encode(b"root\n").decode()
    assert ctl.call(supervisor.vmdir / CTL, "console_write", {"data_b64": data}) is True
    assert supervisor.machine is not None and supervisor.machine.console().endswith("root\n")


def test_watch_says_hello_then_streams_events_until_the_vm_ends(supervisor: Supervisor) -> None:
    events = ctl.watch(supervisor.vmdir / CTL)
    assert next(events)["event"] == "hello"
    got: list[dict[str, object]] = []
    reader = threading.Thread(target=lambda: got.extend(events))
    reader.start()
    ctl.call(supervisor.vmdir / CTL, "pause")
    supervisor.finish(VmState.SHUTOFF, "guest powered off")
    reader.join(10)
    assert not reader.is_alive()
    assert [(e["state"], e["reason"]) for e in got] == [("paused", "pause"), ("shut off", "guest powered off")]
    with pytest.raises(ctl.SupervisorGone):
        ctl.call(supervisor.vmdir / CTL, "status")


def test_a_failed_start_reaches_the_daemon_typed_through_the_ready_report() -> None:
    with tempfile.TemporaryDirectory(prefix="vmp-", dir="/tmp") as d:
        vmdir = Path(d)
        machine = MachineSpec(name="vm1", boot=BootSpec(kernel=Path("/k"))).to_json()
        config = {"name": "vm1", "machine": machine, "engine_factory": "virtkit.engines.select:pick_engine",
                  "engine": "warp-drive"}  # fmt: skip
        (vmdir / "vm.json").write_text(json.dumps(config))
        r, w = os.pipe()
        assert Supervisor(vmdir).run(w) == 1
        with os.fdopen(r, "rb") as f:
            report = json.loads(f.readline())
        with pytest.raises(ConfigError, match="unknown engine 'warp-drive'") as e:
            ctl.raise_remote(report)
        assert e.value.hint and "qemu" in e.value.hint
        assert json.loads((vmdir / "state.json").read_text())["state"] == "shut off"
