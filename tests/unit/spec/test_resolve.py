"""resolve(): a user's spec in, the engines' machine config out (golden-style), and bad input named with its fix."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from virtkit.config import defaults
from virtkit.errors import ConfigError
from virtkit.spec.domain import NetSpec, validate_spec
from virtkit.spec.machine import MachineConfig, NicConfig
from virtkit.spec.resolve import BootImage, guest_cmdline, resolve


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("vmlinuz", "initrd.img", "data.img"):
        (tmp_path / name).write_bytes(b"\0" * 4096)
    return tmp_path


class FakeImages:
    """An injected image resolver: no build, records what was asked for."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.asked: list[str] = []

    def __call__(self, name: str) -> BootImage:
        self.asked.append(name)
        return BootImage(self.root / f"{name}.kernel", self.root / f"{name}.initrd", "console=ttyS0 quiet")


class FakeNetworks:
    """An injected NIC attacher: a TAP per NIC, as the network layer would plug in."""

    def __init__(self) -> None:
        self.attached: list[tuple[int, str | None]] = []

    def __call__(self, index: int, nic: NetSpec) -> NicConfig:
        self.attached.append((index, nic.network))
        return NicConfig(kind="tap", ifname=f"vk-web1-{index}")


def test_image_domain_resolves_to_this_config(files: Path) -> None:
    spec = validate_spec(
        {
            "name": "web1",
            "engine": "qemu",
            "memory": "512M",
            "vcpus": 2,
            "image": "tiny",
            "disks": [{"path": "data.img", "readonly": True}],
            "nics": ["user", "default", {"kind": "user", "mac": "52:54:00:AA:BB:CC", "forwards": [["tcp", 2222, 22]]}],
        }
    )
    images, networks = FakeImages(files), FakeNetworks()
    config = resolve(spec, images=images, networks=networks)
    assert config.to_json() == {
        "name": "web1",
        "boot": {
            "kernel": str(files / "tiny.kernel"),
            "initrd": str(files / "tiny.initrd"),
            "cmdline": "console=ttyS0 quiet virtkit.hostname=web1",
            "disk": None,
            "disk_format": "raw",
        },
        "engine": "qemu",
        "vcpus": 2,
        "memory_mib": 512,
        "disks": [{"path": str(files / "data.img"), "format": "raw", "readonly": True}],
        "nics": [
            {"kind": "user", "mac": defaults.stable_mac("web1", 0), "ifname": None, "device": None, "forwards": []},
            {"kind": "tap", "mac": defaults.stable_mac("web1", 1), "ifname": "vk-web1-1", "device": None,
             "forwards": []},
            {"kind": "user", "mac": "52:54:00:aa:bb:cc", "ifname": None, "device": None,
             "forwards": [["tcp", 2222, 22]]},
        ],
        "paravirt": True,
        "agent": True,
    }  # fmt: skip
    assert images.asked == ["tiny"] and networks.attached == [(1, "default")]
    assert MachineConfig.from_json(config.to_json()) == config


def test_kernel_boot_gets_absolute_paths_the_default_cmdline_and_the_hostname(files: Path) -> None:
    spec = validate_spec(
        {"name": "k1", "boot": {"kernel": "vmlinuz", "initrd": "initrd.img"}, "paravirt": False, "agent": False}
    )
    config = resolve(spec, images=FakeImages(files))
    assert config.boot.kernel == files / "vmlinuz" and config.boot.initrd == files / "initrd.img"
    assert config.boot.cmdline == f"{defaults.DEFAULT_CMDLINE} virtkit.hostname=k1"
    assert (config.paravirt, config.agent, config.nics, config.disks) == (False, False, (), ())


def test_a_cmdline_that_names_a_hostname_keeps_it() -> None:
    assert guest_cmdline("vm", "console=ttyS0 virtkit.hostname=other") == "console=ttyS0 virtkit.hostname=other"
    assert guest_cmdline("vm", "console=ttyS0") == "console=ttyS0 virtkit.hostname=vm"


def test_a_network_nic_keeps_the_mac_its_spec_names(files: Path) -> None:
    spec = validate_spec(
        {"name": "web1", "image": "tiny", "nics": [{"network": "default", "mac": "52:54:00:00:00:01"}]}
    )
    config = resolve(spec, images=FakeImages(files), networks=FakeNetworks())
    assert config.nics[0].mac == "52:54:00:00:00:01" and config.nics[0].ifname == "vk-web1-0"


def test_boot_disk_format_is_read_from_the_file(files: Path) -> None:
    config = resolve(validate_spec({"name": "d1", "boot": {"disk": "data.img"}}), images=FakeImages(files))
    assert config.boot.disk == files / "data.img" and config.boot.disk_format == "raw" and config.boot.kernel is None


def test_the_image_resolver_is_asked_only_for_image_domains(files: Path) -> None:
    images = FakeImages(files)
    resolve(validate_spec({"name": "k1", "boot": {"kernel": "vmlinuz"}}), images=images)
    assert images.asked == []


# -- bad input: the field path and the fix ------------------------------------------------------------------


def _error(spec: dict[str, Any], files: Path, networks: Any = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        resolve(validate_spec(spec), images=FakeImages(files), networks=networks)
    assert info.value.hint, "every error says how to fix it"
    return info.value


def test_missing_kernel_names_its_field(files: Path) -> None:
    err = _error({"name": "k1", "boot": {"kernel": "nosuch"}}, files)
    assert "k1: boot.kernel nosuch does not exist" in err.message and "--kernel" in str(err.hint)


def test_missing_disk_names_its_index(files: Path) -> None:
    err = _error({"name": "k1", "image": "tiny", "disks": [{"path": "data.img"}, {"path": "gone.qcow2"}]}, files)
    assert "disks.1.path gone.qcow2 does not exist" in err.message and "qemu-img create" in str(err.hint)


def test_a_network_nic_without_a_network_layer_is_refused(files: Path) -> None:
    err = _error({"name": "k1", "image": "tiny", "nics": ["user", "default"]}, files)
    assert "nics.1 asks for network 'default'" in err.message and "user" in str(err.hint)


@pytest.mark.parametrize(
    ("spec", "path", "words"),
    [
        ({"name": "v", "image": "tiny", "nics": [{"network": "default", "mac": "01:00:5e:00:00:01"}]}, "nics.0.mac",
         "multicast"),
        ({"name": "v", "image": "tiny", "nics": [{"kind": "tap"}]}, "nics.0", "needs ifname"),
        ({"name": "v", "image": "tiny", "memory": "16M"}, "memory", "greater than or equal to 32"),
        ({"name": "bad name", "image": "tiny"}, "name", "not a valid domain name"),
        ({"name": "v", "boot": {"disk": "d.img", "initrd": "i"}}, "boot", "only go with kernel"),
    ],
)  # fmt: skip
def test_spec_errors_carry_field_paths(spec: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_spec(spec)
    assert f"{path}: " in info.value.message and words in info.value.message
    assert info.value.hint


def test_stable_mac_is_one_formula() -> None:
    from virtkit.network import args

    assert args.stable_mac is defaults.stable_mac
    h = hashlib.sha256(b"web/0").digest()
    assert defaults.stable_mac("web", 0) == f"52:54:00:{h[0]:02x}:{h[1]:02x}:{h[2]:02x}"
