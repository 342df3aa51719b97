from __future__ import annotations

import json
from pathlib import Path

import pytest

from virtkit.daemon.domain import Action, DomainState, TransitionError, check_transition
from virtkit.errors import ConfigError
from virtkit.spec.domain import load_spec_file, parse_mib, parse_spec_text, validate_spec

TOML = """
name = "web1"
engine = "qemu"
vcpus = 2
memory = "512M"
image = "tiny"
autostart = true
nics = ["default", "user"]
[limits]
cpus = 0.5
memory_mib = "1G"
"""


def test_toml_spec_resolves_sizes_and_shorthands() -> None:
    s = parse_spec_text(TOML, "toml")
    assert (s.name, s.engine, s.vcpus, s.memory, s.autostart) == ("web1", "qemu", 2, 512, True)
    assert s.nics[0].network == "default" and s.nics[1].kind == "user"
    assert s.cpu_limit() == 0.5 and s.memory_limit_mib() == 1024


def test_yaml_and_json_give_the_same_spec(tmp_path: Path) -> None:
    import yaml

    data = {"name": "a", "image": "tiny", "memory": 256, "vcpus": 1}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "a.json").write_text(json.dumps(data))
    assert load_spec_file(tmp_path / "a.yaml") == load_spec_file(tmp_path / "a.json")


def test_default_limits_follow_the_spec() -> None:
    s = validate_spec({"name": "a", "image": "tiny", "vcpus": 3, "memory": 300})
    assert s.cpu_limit() == 3.0
    assert s.memory_limit_mib() == 300 + 512


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"name": "a", "image": "tiny", "vcpus": 0}, "vcpus"),
        ({"name": "a", "image": "tiny", "memory": "lots"}, "memory"),
        ({"name": "bad name!", "image": "tiny"}, "name"),
        ({"name": "a", "image": "tiny", "nics": [{"kind": "user", "mac": "01:00:00:00:00:01"}]}, "nics.0"),
        ({"name": "a", "image": "tiny", "limits": {"cpus": -1}}, "limits.cpus"),
        ({"name": "a", "boot": {"initrd": "/x"}}, "boot"),
        ({"name": "a", "image": "tiny", "disks": [{"path": "/d", "format": "vmdk"}]}, "disks.0.format"),
        ({"name": "a", "image": "tiny", "colour": "red"}, "colour"),
    ],
)
def test_errors_name_the_field_path(spec: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as e:
        validate_spec(spec)
    assert f"{path}" in e.value.message
    assert e.value.hint


def test_needs_image_or_boot_but_not_both() -> None:
    with pytest.raises(ConfigError, match="image = 'tiny' or a boot section"):
        validate_spec({"name": "a"})
    with pytest.raises(ConfigError, match="either image or boot"):
        validate_spec({"name": "a", "image": "tiny", "boot": {"kernel": "/k"}})


def test_unparseable_text_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot parse the TOML"):
        parse_spec_text("name = ", "toml")
    with pytest.raises(ConfigError, match="mapping"):
        parse_spec_text("[1, 2]", "json")
    with pytest.raises(ConfigError, match="larger than"):
        parse_spec_text("#" * 300_000, "toml")


def test_sizes() -> None:
    assert parse_mib("1G") == 1024 and parse_mib("256M") == 256 and parse_mib("2GiB") == 2048
    assert parse_mib(64) == 64
    with pytest.raises(ValueError):
        parse_mib("1.5G")


def test_state_machine() -> None:
    check_transition("a", DomainState.SHUTOFF, Action.START)
    check_transition("a", DomainState.CRASHED, Action.START)
    check_transition("a", DomainState.RUNNING, Action.SUSPEND)
    check_transition("a", DomainState.PAUSED, Action.RESUME)
    check_transition("a", DomainState.CRASHED, Action.DESTROY)
    for state, action in [(DomainState.RUNNING, Action.START), (DomainState.SHUTOFF, Action.SUSPEND),
                          (DomainState.RUNNING, Action.RESUME), (DomainState.RUNNING, Action.UNDEFINE),
                          (DomainState.PAUSED, Action.REBOOT), (DomainState.SHUTOFF, Action.DESTROY)]:
        with pytest.raises(TransitionError) as e:
            check_transition("a", state, action)
        assert e.value.hint
