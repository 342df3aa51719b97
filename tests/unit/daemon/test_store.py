from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from virtkit.daemon.domain import DomainState, validate_spec
from virtkit.daemon.store import SCHEMA_VERSION, Conflict, NotFound, Store
from virtkit.errors import ConfigError

SRC = str(Path(__file__).resolve().parents[3] / "src")


def spec(name: str) -> object:
    return validate_spec({"name": name, "image": "tiny"})


def test_migrates_a_fresh_and_an_old_database(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    assert s.schema_version() == SCHEMA_VERSION
    # a version-1 database (as an older virtkitd left it) gains the later tables, keeping its rows
    db = sqlite3.connect(tmp_path / "b.db")
    from virtkit.daemon.store import MIGRATIONS

    MIGRATIONS[0](db)
    db.execute("INSERT INTO domains (name, spec, created, updated) VALUES ('x', ?, 0, 0)",
               (spec("x").model_dump_json(),))  # type: ignore[attr-defined]
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    s2 = Store(tmp_path / "b.db")
    assert s2.schema_version() == SCHEMA_VERSION
    assert [d.name for d in s2.list_domains()] == ["x"]
    assert s2.events_since(0) == []


def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "c.db")
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 5}")
    db.close()
    with pytest.raises(ConfigError, match="newer than this virtkit"):
        Store(tmp_path / "c.db")


def test_crud_and_errors(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    s.add_domain(spec("a"))  # type: ignore[arg-type]
    with pytest.raises(Conflict, match="already defined"):
        s.add_domain(spec("a"))  # type: ignore[arg-type]
    s.set_state("a", DomainState.RUNNING, "start")
    assert s.get_domain("a").state == DomainState.RUNNING
    assert s.set_autostart("a", True).autostart
    with pytest.raises(NotFound):
        s.get_domain("nope")
    s.remove_domain("a")
    with pytest.raises(NotFound):
        s.remove_domain("a")


WRITER = """
import sys
from virtkit.daemon.store import Store
from virtkit.daemon.domain import validate_spec
s = Store(__import__("pathlib").Path(sys.argv[1]))
i = 0
while True:
    s.add_domain(validate_spec({"name": f"d{i}", "image": "tiny"}))
    print(i, flush=True)   # acknowledged only after COMMIT returned
    i += 1
"""


def test_acknowledged_writes_survive_kill_9_mid_write(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": SRC})
    assert p.stdout is not None
    acked = -1
    deadline = time.monotonic() + 30
    while acked < 40 and time.monotonic() < deadline:
        acked = int(p.stdout.readline())
    p.send_signal(signal.SIGKILL)  # very likely inside a transaction: it writes continuously
    p.wait()
    s = Store(db)
    assert s.integrity_ok()
    names = {d.name for d in s.list_domains()}
    assert {f"d{i}" for i in range(acked + 1)} <= names
