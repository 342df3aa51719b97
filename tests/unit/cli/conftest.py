"""A virtkitd served from this process (the real API and Service on a unix socket, in a thread) for the CLI's
unit tests; no engine runs, and the network layer works on the test's state directory only."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner


@dataclass
class Cli:
    home: Path
    env: dict[str, str]

    def __call__(self, *args: str) -> tuple[int, str, str]:
        """Run ``virtkit ARGS`` (the whole command tree) as a user would; exit code, stdout, stderr."""
        from virtkit.cli.app import app

        r = CliRunner().invoke(app, list(args), env=self.env)
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            raise r.exception
        return r.exit_code, r.stdout, r.stderr


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    import uvicorn

    from virtkit.daemon.api import create_app, wrap
    from virtkit.daemon.main import bind_unix
    from virtkit.daemon.service import Service
    from virtkit.network.manager import NetworkManager

    with tempfile.TemporaryDirectory(prefix="vkc-", dir="/tmp") as d:  # short: unix socket paths
        home = Path(d)
        monkeypatch.setenv("VIRTKIT_HOME", str(home))
        sock_path = home / "virtkitd.sock"
        networks = NetworkManager()
        service = Service(home, use_cgroups=False, networks=networks)
        server = uvicorn.Server(uvicorn.Config(wrap(create_app(service, None, networks), None), log_level="warning"))
        sock = bind_unix(sock_path, None, 0o600)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "the in-process virtkitd did not start"
            time.sleep(0.02)
        env = {"VIRTKIT_HOME": str(home), "VIRTKIT_SOCKET": str(sock_path), "VIRTKIT_NO_DAEMON_AUTOSTART": "1",
               "COLUMNS": "200"}  # fmt: skip
        try:
            yield Cli(home, env)
        finally:
            server.should_exit = True
            thread.join(10)
            sock.close()


@pytest.fixture
def fake_daemon() -> Iterator[Cli]:
    """A real virtkitd process with the fake engine (tests/support/daemon.py): for verbs that start domains."""
    from tests.support.daemon import running_daemon

    with tempfile.TemporaryDirectory(prefix="vkd-", dir="/tmp") as d, running_daemon(Path(d), fake=True) as daemon:
        env = {"VIRTKIT_HOME": d, "VIRTKIT_SOCKET": str(daemon.socket), "VIRTKIT_NO_DAEMON_AUTOSTART": "1",
               "COLUMNS": "200"}  # fmt: skip
        yield Cli(Path(d), env)
