"""The daemon's state: one SQLite database, schema-versioned with ``PRAGMA user_version``.

WAL journal with ``synchronous=FULL``: a committed define survives the daemon (or the host) dying the instant
after it answered, and a write interrupted half-way is rolled back on the next open. Every change is one
transaction. Connections are per-thread (sqlite3 objects must not cross threads).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from virtkit.daemon.domain import DomainSpec, DomainState
from virtkit.errors import ConfigError, VirtkitError


class NotFound(VirtkitError):
    """The named domain, snapshot or network does not exist."""


class Conflict(VirtkitError):
    """The request clashes with what exists (duplicate name, wrong state)."""


def _v1(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE domains (
            name TEXT PRIMARY KEY,
            spec TEXT NOT NULL,
            autostart INTEGER NOT NULL DEFAULT 0,
            created REAL NOT NULL,
            state TEXT NOT NULL DEFAULT 'shut off',
            state_reason TEXT NOT NULL DEFAULT '',
            updated REAL NOT NULL)"""
    )
    db.execute(
        """CREATE TABLE snapshots (
            domain TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE,
            name TEXT NOT NULL,
            created REAL NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            memory INTEGER NOT NULL DEFAULT 0,
            state TEXT NOT NULL,
            PRIMARY KEY (domain, name))"""
    )


def _v2(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, body TEXT NOT NULL)")


# Append-only: migration N takes a database from user_version N-1 to N. Never edit a released one.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1, _v2]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class DomainRow:
    name: str
    spec: DomainSpec
    autostart: bool
    created: float
    state: DomainState
    state_reason: str


@dataclass(frozen=True)
class SnapshotRow:
    domain: str
    name: str
    created: float
    description: str
    memory: bool
    state: DomainState


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self.migrate()

    def _connect(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=True)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
        return db

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE so writers queue instead of failing)."""
        db = self._connect()
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def migrate(self) -> None:
        db = self._connect()
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"{self.path} has schema version {version}, newer than this virtkit ({SCHEMA_VERSION})",
                hint="upgrade virtkit, or point VIRTKIT_HOME at another state directory",
            )
        for n in range(version, SCHEMA_VERSION):
            with self.tx() as t:
                MIGRATIONS[n](t)
                t.execute(f"PRAGMA user_version={n + 1}")

    def schema_version(self) -> int:
        return int(self._connect().execute("PRAGMA user_version").fetchone()[0])

    def integrity_ok(self) -> bool:
        return bool(self._connect().execute("PRAGMA integrity_check").fetchone()[0] == "ok")

    # -- domains
    def add_domain(self, spec: DomainSpec) -> DomainRow:
        now = time.time()
        try:
            with self.tx() as t:
                t.execute(
                    "INSERT INTO domains (name, spec, autostart, created, updated) VALUES (?, ?, ?, ?, ?)",
                    (spec.name, spec.model_dump_json(), int(spec.autostart), now, now),
                )
        except sqlite3.IntegrityError as e:
            raise Conflict(
                f"domain {spec.name!r} is already defined",
                hint=f"pick another name or `virtkit undefine {spec.name}` first",
            ) from e
        return self.get_domain(spec.name)

    def replace_spec(self, spec: DomainSpec) -> None:
        with self.tx() as t:
            cur = t.execute(
                "UPDATE domains SET spec=?, autostart=?, updated=? WHERE name=?",
                (spec.model_dump_json(), int(spec.autostart), time.time(), spec.name),
            )
            if cur.rowcount == 0:
                raise self._nf(spec.name)

    @staticmethod
    def _nf(name: str) -> NotFound:
        return NotFound(f"domain {name!r} is not defined", hint="see `virtkit list --all` for the defined domains")

    @staticmethod
    def _row(r: tuple[str, str, int, float, str, str]) -> DomainRow:
        return DomainRow(r[0], DomainSpec.model_validate_json(r[1]), bool(r[2]), r[3], DomainState(r[4]), r[5])

    def get_domain(self, name: str) -> DomainRow:
        r = (
            self._connect()
            .execute("SELECT name, spec, autostart, created, state, state_reason FROM domains WHERE name=?", (name,))
            .fetchone()
        )
        if r is None:
            raise self._nf(name)
        return self._row(r)

    def list_domains(self) -> list[DomainRow]:
        rows = (
            self._connect()
            .execute("SELECT name, spec, autostart, created, state, state_reason FROM domains ORDER BY name")
            .fetchall()
        )
        return [self._row(r) for r in rows]

    def list_summaries(self) -> list[tuple[str, DomainState, bool, str]]:
        """(name, state, autostart, engine) of every domain, without parsing the specs (``list`` is hot)."""
        rows = (
            self._connect()
            .execute("SELECT name, state, autostart, json_extract(spec, '$.engine') FROM domains ORDER BY name")
            .fetchall()
        )
        return [(r[0], DomainState(r[1]), bool(r[2]), str(r[3])) for r in rows]

    def set_state(self, name: str, state: DomainState, reason: str = "") -> None:
        with self.tx() as t:
            t.execute(
                "UPDATE domains SET state=?, state_reason=?, updated=? WHERE name=?",
                (str(state), reason, time.time(), name),
            )

    def set_autostart(self, name: str, enabled: bool) -> DomainRow:
        row = self.get_domain(name)
        spec = row.spec.model_copy(update={"autostart": enabled})
        self.replace_spec(spec)
        return self.get_domain(name)

    def remove_domain(self, name: str) -> None:
        with self.tx() as t:
            if t.execute("DELETE FROM domains WHERE name=?", (name,)).rowcount == 0:
                raise self._nf(name)

    # -- snapshots
    def add_snapshot(self, snap: SnapshotRow) -> None:
        try:
            with self.tx() as t:
                t.execute(
                    "INSERT INTO snapshots (domain, name, created, description, memory, state)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (snap.domain, snap.name, snap.created, snap.description, int(snap.memory), str(snap.state)),
                )
        except sqlite3.IntegrityError as e:
            raise Conflict(
                f"domain {snap.domain!r} already has a snapshot {snap.name!r}",
                hint="pick another snapshot name or delete the old one",
            ) from e

    def list_snapshots(self, domain: str) -> list[SnapshotRow]:
        rows = (
            self._connect()
            .execute(
                "SELECT domain, name, created, description, memory, state FROM snapshots WHERE domain=?"
                " ORDER BY created",
                (domain,),
            )
            .fetchall()
        )
        return [SnapshotRow(r[0], r[1], r[2], r[3], bool(r[4]), DomainState(r[5])) for r in rows]

    def get_snapshot(self, domain: str, name: str) -> SnapshotRow:
        for s in self.list_snapshots(domain):
            if s.name == name:
                return s
        raise NotFound(f"domain {domain!r} has no snapshot {name!r}", hint=f"see `virtkit snapshot-list {domain}`")

    def remove_snapshot(self, domain: str, name: str) -> None:
        with self.tx() as t:
            if t.execute("DELETE FROM snapshots WHERE domain=? AND name=?", (domain, name)).rowcount == 0:
                raise NotFound(
                    f"domain {domain!r} has no snapshot {name!r}", hint=f"see `virtkit snapshot-list {domain}`"
                )

    # -- events (a bounded log so a client that reconnects can catch up)
    def add_event(self, body: dict[str, object]) -> int:
        with self.tx() as t:
            cur = t.execute("INSERT INTO events (time, body) VALUES (?, ?)", (time.time(), json.dumps(body)))
            seq = int(cur.lastrowid or 0)
            t.execute("DELETE FROM events WHERE seq <= ?", (seq - 1000,))
        return seq

    def events_since(self, seq: int) -> list[tuple[int, dict[str, object]]]:
        rows = self._connect().execute("SELECT seq, body FROM events WHERE seq > ? ORDER BY seq", (seq,)).fetchall()
        return [(r[0], json.loads(r[1])) for r in rows]

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
