"""Every command's --help renders (a help text once crashed `virtkit run --help` with rich markup)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer
from typer.testing import CliRunner

from virtkit.cli.app import app


def _paths(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command's words, the root's too (typer's command classes: a group has ``commands``)."""
    yield path
    for name, sub in (getattr(cmd, "commands", None) or {}).items():
        yield from _paths(sub, (*path, name))


def test_every_help_renders() -> None:
    root = typer.main.get_command(app)
    paths = list(_paths(root))
    assert len(paths) > 35 and ("run",) in paths and ("image", "build") in paths and ("net-list",) in paths
    runner = CliRunner()
    for path in paths:
        r = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
        assert r.exception is None or isinstance(r.exception, SystemExit), (path, r.exception)
        assert r.exit_code == 0, (path, r.output)
        usage = r.stdout.splitlines()[0]
        assert usage.startswith("Usage: ") and " ".join(("virtkit", *path)) in usage, (path, r.stdout)
        assert len(r.stdout.strip().splitlines()) > 3, (path, r.stdout)


def test_root_help_lists_the_exit_codes_and_version() -> None:
    r = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "100"})
    assert r.exit_code == 0
    text = " ".join(r.stdout.split())  # as wrapped to the terminal's width
    assert "--version" in text and "Exit codes: 0 success" in text and "124 guest not ready in time" in text
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == __import__("virtkit").__version__
