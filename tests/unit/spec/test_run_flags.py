"""`virtkit run`'s flags become a domain spec, which then goes through the same resolve() as the daemon's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from virtkit.cli.runcmd import machine_spec
from virtkit.errors import ConfigError
from virtkit.spec.resolve import BootImage, resolve

FLAGS: dict[str, Any] = dict(
    engine="qemu", image="tiny", kernel=None, initrd=None, cmdline="console=ttyS0", memory=256, vcpus=1,
    disks=[], networks=["none"], publish=[], paravirt=True,
)  # fmt: skip


def test_networks_and_publish_land_on_the_nics() -> None:
    spec = machine_spec("run-1", **{**FLAGS, "networks": ["user", "bridge=br0"], "publish": ["8080:80"]})
    assert spec.nics[0].kind == "user" and spec.nics[0].forwards == (("tcp", 8080, 80),)
    assert spec.nics[1].network == "bridge=br0" and spec.nics[1].forwards == ()
    assert spec.image == "tiny" and spec.boot is None


def test_image_cmdline_comes_from_the_flag_through_the_image_resolver(tmp_path: Path) -> None:
    spec = machine_spec("run-1", **{**FLAGS, "paravirt": False, "memory": 512})
    config = resolve(spec, images=lambda name: BootImage(tmp_path / "k", tmp_path / "i", "console=ttyS0 quiet"))
    assert config.boot.cmdline == "console=ttyS0 quiet virtkit.hostname=run-1"
    assert (config.paravirt, config.memory_mib, config.engine) == (False, 512, "qemu")


def test_kernel_flags_give_a_boot_section(tmp_path: Path) -> None:
    spec = machine_spec("run-1", **{**FLAGS, "kernel": tmp_path / "k", "initrd": tmp_path / "i"})
    assert spec.image is None and spec.boot is not None and spec.boot.kernel == tmp_path / "k"


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        ({"kernel": Path("/k")}, "--kernel needs --initrd"),
        ({"publish": ["8080:80"]}, "--publish needs a network"),
        ({"vcpus": 0}, "invalid machine: vcpus"),
    ],
)
def test_bad_flags_are_one_clear_error(flags: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words) as info:
        machine_spec("run-1", **{**FLAGS, **flags})
    assert info.value.hint
