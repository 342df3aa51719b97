"""The service's use of the network layer, with a recording stand-in for NetworkManager (no host changes)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from tests.support import fake_daemon
from tests.support.daemon import PYTHONPATH

from virtkit.config.machine import NicSpec
from virtkit.daemon.domain import validate_spec
from virtkit.daemon.service import Service


class RecordingNetworks:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def attach_nic(self, vm: str, index: int, network: str) -> NicSpec:
        self.calls.append(("attach", vm, index, network))
        return NicSpec(kind="tap", ifname=f"vk{index}", mac="52:54:00:00:00:0a")

    def detach_nic(self, vm: str, index: int) -> None:
        self.calls.append(("detach", vm, index))

    def adopt(self) -> list[Any]:
        self.calls.append(("adopt",))
        return []

    def autostart_all(self) -> list[str]:
        self.calls.append(("autostart_all",))
        return []


def test_nics_are_attached_at_start_and_detached_at_stop(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", PYTHONPATH)  # the supervisor imports the fake engine from tests.support
    monkeypatch.setenv("VIRTKIT_HOME", str(home))
    monkeypatch.setenv("VIRTKIT_CGROUP_PARENT", f"virtkit-test-svc-{home.name}")
    nets = RecordingNetworks()
    svc = Service(
        home, engine_factory=fake_daemon.ENGINE, use_cgroups=False, networks=nets, images=fake_daemon.fake_boot_image
    )
    svc.recover(autostart=True)
    assert nets.calls[:2] == [("adopt",), ("autostart_all",)]
    svc.define(validate_spec({"name": "n1", "image": "tiny", "nics": ["default", "user"]}))
    try:
        svc.start("n1")
        assert ("attach", "n1", 0, "default") in nets.calls
        machine = json.loads((home / "vms" / "n1" / "vm.json").read_text())["machine"]
        assert [n["kind"] for n in machine["nics"]] == ["tap", "user"]
        assert machine["nics"][0]["ifname"] == "vk0"
    finally:
        svc.destroy("n1")
    deadline = time.monotonic() + 10
    while ("detach", "n1", 0) not in nets.calls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ("detach", "n1", 0) in nets.calls
    assert not any(c[0] == "attach" and c[2] == 1 for c in nets.calls)  # "user" needs no network layer
