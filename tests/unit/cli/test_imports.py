"""What starting the CLI imports: the hot verbs must not pay for pydantic, the API server, netlink, QMP, an HTTP
library or rich (each costs 10-60 ms of a `virtkit list` that virsh answers in ~15 ms). Guarded by module
names, not timings: bench/cli.py measures the times."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("pydantic", "fastapi", "starlette", "uvicorn", "pyroute2", "qemu", "httpx", "rich", "yaml", "elftools")


def _imported(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {m.split(".")[0] for m in json.loads(out.splitlines()[-1])}


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["list", "--all", "--json"],
        ["dominfo", "vm1"],
        ["start", "vm1", "vm2"],
        ["exec", "vm1", "--", "true"],
    ],
)
def test_the_hot_verbs_import_no_heavy_module_and_no_typer(argv: list[str]) -> None:
    mods = _imported(f"from virtkit.cli.main import fast_path\nassert fast_path({argv!r}) is not None")
    assert not mods & {*HEAVY, "typer", "click"}, mods & {*HEAVY, "typer", "click"}


def test_importing_the_entry_point_imports_no_heavy_module() -> None:
    mods = _imported("import virtkit.cli.main, virtkit.client, virtkit")
    assert not mods & {*HEAVY, "typer"}, mods & {*HEAVY, "typer"}


def test_the_command_tree_imports_only_typer() -> None:
    mods = _imported("import virtkit.cli.app")
    assert "typer" in mods
    assert not mods & set(HEAVY), mods & set(HEAVY)
