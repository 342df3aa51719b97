"""The entry point's fast path calls what typer would call, for exactly the forms it takes; others go to typer."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from virtkit.cli import hot
from virtkit.cli.app import app
from virtkit.cli.main import fast_path

FAST = [
    ["list"],
    ["list", "--all"],
    ["list", "--json", "--all"],
    ["dominfo", "vm1"],
    ["dominfo", "--json", "vm1"],
    ["start", "vm1"],
    ["start", "vm1", "vm2", "--json"],
    ["exec", "vm1", "--", "uname", "-r"],
    ["exec", "--json", "vm1", "--", "sh", "-c", "exit 3"],
]
TYPER_ONLY = [
    [],
    ["--help"],
    ["list", "--help"],
    ["list", "--all", "--all"],
    ["list", "vm1"],
    ["dominfo"],
    ["dominfo", "vm1", "vm2"],
    ["start"],
    ["start", "vm1", "--verbose"],
    ["exec", "vm1", "uname"],
    ["exec", "vm1", "--timeout", "5", "--", "true"],
    ["exec", "vm1", "--"],
    ["shutdown", "vm1"],
    ["--version", "list"],
]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []
    for fn in ("list_domains", "dominfo", "lifecycle", "exec_in"):
        monkeypatch.setattr(hot, fn, lambda *a, _fn=fn: seen.append((_fn, a)))
    return seen


@pytest.mark.parametrize("argv", FAST)
def test_the_fast_path_calls_what_typer_calls(argv: list[str], calls: list[tuple[str, Any]]) -> None:
    run = fast_path(argv)
    assert run is not None
    run()
    r = CliRunner().invoke(app, argv)
    assert r.exit_code == 0, r.output
    assert len(calls) == 2 and calls[0] == calls[1], calls


@pytest.mark.parametrize("argv", TYPER_ONLY)
def test_every_other_form_goes_to_typer(argv: list[str]) -> None:
    assert fast_path(argv) is None


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import virtkit

    run = fast_path(["--version"])
    assert run is not None
    run()
    assert capsys.readouterr().out == f"{virtkit.__version__}\n"
