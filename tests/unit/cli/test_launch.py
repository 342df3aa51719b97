"""`virtkit launch` in every form README and the other tools' users type: which word is the image, which the name."""

from __future__ import annotations

import json

import pytest
from tests.unit.cli.conftest import Cli

from virtkit.cli.vm import launch_target
from virtkit.errors import ConfigError

KNOWN = ("tiny",)


@pytest.mark.parametrize(
    ("first", "second", "name", "image", "expected"),
    [
        ("web1", None, None, None, ("web1", "tiny")),  # README: virtkit launch web1 --network default
        ("web1", None, None, "tiny", ("web1", "tiny")),  # launch NAME --image IMAGE
        ("tiny", None, "web1", None, ("web1", "tiny")),  # Multipass: launch --name web1 IMAGE
        ("tiny", None, None, None, (None, "tiny")),  # Multipass: launch IMAGE (a random name)
        ("tiny", "web1", None, None, ("web1", "tiny")),  # Incus: launch IMAGE web1
        ("debian", "web1", None, None, ("web1", "debian")),  # an image this client does not know: the daemon says
        ("tiny", None, None, "tiny", ("tiny", "tiny")),  # --image given: the word is a name, even a known image's
        (None, None, "web1", "tiny", ("web1", "tiny")),  # all options
        (None, None, None, None, (None, "tiny")),  # nothing: a random name, the default image
    ],
)
def test_which_word_is_which(
    first: str | None, second: str | None, name: str | None, image: str | None, expected: tuple[str | None, str]
) -> None:
    assert launch_target(first, second, name, image, KNOWN) == expected


@pytest.mark.parametrize(
    ("first", "second", "name", "image", "needle"),
    [
        ("tiny", "web1", "web2", None, "--name/--image too"),
        ("tiny", "web1", None, "tiny", "--name/--image too"),
        ("tiny", None, "web1", "tiny", "the image twice"),
    ],
)
def test_saying_it_twice_is_an_error(
    first: str, second: str | None, name: str | None, image: str | None, needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle) as e:
        launch_target(first, second, name, image, KNOWN)
    assert e.value.hint


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["web1"], "web1"),
        (["web2", "--image", "tiny"], "web2"),
        (["--name", "web3", "tiny"], "web3"),
        (["-n", "web4", "tiny"], "web4"),
        (["tiny", "web5"], "web5"),
        (["tiny"], None),
        ([], None),
    ],
)
def test_every_form_launches(fake_daemon: Cli, args: list[str], name: str | None) -> None:
    code, out, err = fake_daemon("launch", *args, "--memory", "128M", "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["state"] == "running" and info["spec"]["image"] == "tiny"
    if name is None:
        assert info["name"].startswith("vm-") and len(info["name"]) == 9
    else:
        assert info["name"] == name


def test_conflicting_words_exit_2_and_make_nothing(fake_daemon: Cli) -> None:
    code, out, err = fake_daemon("launch", "tiny", "web1", "--name", "web2")
    assert code == 2 and out == ""
    assert err.startswith("virtkit: error: launch got IMAGE and NAME") and "fix: give each once" in err
    assert json.loads(fake_daemon("list", "--all", "--json")[1]) == []


def test_help_says_which_forms_work(fake_daemon: Cli) -> None:
    code, out, _ = fake_daemon("launch", "--help")
    assert code == 0
    for form in (
        "launch NAME [--image IMAGE]",
        "launch IMAGE NAME",
        "launch --name NAME IMAGE",
        "-n, --name",
        "--image",
    ):
        assert form in out
