"""Property-based run of schemathesis over the daemon's own OpenAPI document: no request may get a 5xx.

A real virtkitd (fake engine) on TCP with a token; path parameters are pinned to a defined, running domain
and one of its snapshots so that the calls reach the lifecycle code instead of stopping at 404."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.daemon import running_daemon


@pytest.mark.timeout(900)
def test_no_server_errors(home: Path, tmp_path: Path) -> None:
    # next to this interpreter (a venv used without activating it, as CI does), else on PATH
    beside = Path(sys.executable).with_name("schemathesis")
    exe = str(beside) if beside.exists() else (shutil.which("schemathesis") or "")
    if not exe:
        pytest.skip("schemathesis is not installed (pip install schemathesis)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with running_daemon(home, fake=True, tcp=f"127.0.0.1:{port}") as d:
        c = d.client()
        c.define({"name": "st1", "image": "tiny"})
        c.start("st1")
        c.snapshot_create("st1", "s1")
        token = (home / "token").read_text().strip()
        cfg = tmp_path / "schemathesis.toml"
        cfg.write_text('[parameters]\n"path.name" = "st1"\n"path.snap" = "s1"\n')
        r = subprocess.run(
            [exe, "--config-file", str(cfg), "run", f"http://127.0.0.1:{port}/openapi.json",
             "-H", f"Authorization: Bearer {token}", "--checks", "not_a_server_error", "-n", "15",
             "--exclude-path", "/v1/events", "--request-timeout", "60", "--workers", "1", "--no-color"],
            capture_output=True, text=True, timeout=850,
        )
        assert r.returncode == 0, r.stdout[-8000:] + r.stderr[-2000:]
        assert "passed" in r.stdout
        # the calls reached the lifecycle code (not only 404s): the event log shows actions on st1
        actions = {e.reason for e in c.events(since=0, follow=False) if e.domain == "st1"}
        assert len(actions) >= 4, actions
        # the daemon is still healthy and the state consistent
        assert c.host().version
        assert all(x.state in ("running", "paused", "shut off", "crashed") for x in c.list(all=True))
