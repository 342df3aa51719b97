"""Configs that cross a process boundary: JSON out, the same config back in, and bad documents named by path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from virtkit.engines import native_main
from virtkit.errors import ConfigError
from virtkit.machine.config import VmmConfig
from virtkit.spec.machine import BootConfig, InvalidMachine, MachineConfig, NicConfig


def test_machine_config_round_trips() -> None:
    config = MachineConfig(
        name="m",
        boot=BootConfig(kernel=Path("/k"), initrd=None, cmdline="console=ttyS0"),
        nics=(NicConfig(kind="macvtap", ifname="mv0", device=Path("/dev/tap7"), mac="52:54:00:00:00:02"),),
    )
    data = json.loads(json.dumps(config.to_json()))
    assert MachineConfig.from_json(data) == config


def test_a_bad_document_names_the_field() -> None:
    data = MachineConfig(name="m", boot=BootConfig(kernel=Path("/k"))).to_json()
    with pytest.raises(ConfigError, match=r"machine\.vcpus: expected int, got '2'"):
        MachineConfig.from_json({**data, "vcpus": "2"})
    with pytest.raises(ConfigError, match=r"machine\.boot\.disk_format: expected 'raw' or 'qcow2'"):
        MachineConfig.from_json({**data, "boot": {**data["boot"], "disk_format": "vmdk"}})
    with pytest.raises(ConfigError, match=r"machine: unknown field 'memory'"):
        MachineConfig.from_json({**data, "memory": 1})


def test_the_config_keeps_its_rules_when_built_by_hand() -> None:
    with pytest.raises(InvalidMachine, match="exactly one of kernel and disk"):
        BootConfig()
    with pytest.raises(InvalidMachine, match="not a valid machine name"):
        MachineConfig(name="a b", boot=BootConfig(kernel=Path("/k")))
    with pytest.raises(InvalidMachine, match="1 to 64"):
        MachineConfig(name="a", boot=BootConfig(kernel=Path("/k")), vcpus=0)
    assert NicConfig(mac="52:54:00:AB:CD:EF").mac == "52:54:00:ab:cd:ef"


def test_native_vmm_reads_one_document_from_a_file_stdin_or_inline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    process = native_main.VmmProcess(
        vmm=VmmConfig(kernel=tmp_path / "k", memory_mib=64, on_reset="exit"), console="none", stdin=True
    )
    text = json.dumps(process.to_json())
    (tmp_path / "vmm.json").write_text(text)
    assert native_main.load_process(str(tmp_path / "vmm.json")) == process
    assert native_main.load_process(text) == process
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert native_main.load_process("-") == process


def test_native_vmm_refuses_a_bad_document_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert native_main.main(['{"vmm": {"kernel": "/k", "memory_mib": "lots"}}']) == native_main.EXIT_BAD_INPUT
    assert "config.vmm.memory_mib: expected int" in capsys.readouterr().err
    assert native_main.main([str(tmp_path / "missing.json")]) == native_main.EXIT_BAD_INPUT
    assert "cannot read the VMM config" in capsys.readouterr().err
    assert native_main.main(["--kernel", "k"]) == native_main.EXIT_BAD_INPUT
    assert "usage:" in capsys.readouterr().err
