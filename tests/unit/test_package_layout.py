"""The shipped package holds no test support: harnesses and fakes live in tests/support and are injected."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "virtkit"


def test_no_test_support_ships_in_the_package() -> None:
    assert not (SRC / "testing").exists()
    assert not list(SRC.rglob("fake_engine.py"))
    problems = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tests":
                problems.append(f"{path.relative_to(SRC)} imports {node.module}")
            if isinstance(node, ast.Constant) and node.value in ("VIRTKIT_ENGINE_FACTORY", "VIRTKIT_NO_NETWORKS"):
                problems.append(f"{path.relative_to(SRC)} reads {node.value}")
    assert not problems, problems
