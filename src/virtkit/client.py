"""``virtkit.Client``: a typed Python client for virtkitd's REST API.

::

    from virtkit import Client

    with Client() as c:                       # the local daemon's unix socket
        c.define({"name": "vm1", "image": "tiny", "memory": "256M"})
        c.start("vm1")
        c.wait_agent("vm1")
        print(c.exec("vm1", ["uname", "-r"]).stdout)
        c.destroy("vm1")

``Client(url="http://host:8765", token="...")`` talks to a daemon over TCP. Every method returns the API's
pydantic models (:mod:`virtkit.daemon.models`); every failure raises :class:`ApiError` (a
:class:`~virtkit.errors.VirtkitError`) carrying the HTTP status, the error kind, the message and the hint.

Two layers, one place for each URL: :class:`RawClient` makes the calls and returns the API's JSON as plain
lists and dicts; :class:`Client` wraps each result in its model. The CLI uses the raw layer: it prints that
JSON or a table of it, and stays clear of pydantic (and of any HTTP library: this speaks HTTP/1.1 with the
standard library's ``http.client``), which keeps a ``virtkit list`` process start near a ``virsh list``.
"""

from __future__ import annotations

import builtins
import http.client
import json
import os
import socket as socketlib
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from virtkit.config import defaults
from virtkit.errors import VirtkitError

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

    from virtkit.daemon.models import (
        DomainInfo,
        DomainSpec,
        DomainStats,
        DomainSummary,
        Event,
        ExecResult,
        HostInfo,
        Interface,
        SnapshotInfo,
    )

__all__ = ["ApiError", "Client", "DaemonUnreachable", "RawClient", "default_socket"]

Json = Any  # what json.loads returns


class ApiError(VirtkitError):
    """The daemon refused or failed a request. ``status`` is the HTTP status, ``kind`` the error class name."""

    def __init__(self, message: str, hint: str | None, status: int, kind: str) -> None:
        super().__init__(message, hint)
        self.status = status
        self.kind = kind


class DaemonUnreachable(VirtkitError):
    """No daemon answers at the socket or URL."""


def default_socket() -> Path:
    env = os.environ.get("VIRTKIT_SOCKET")
    return Path(env) if env else defaults.state_dir() / "virtkitd.sock"


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket: the local daemon's."""

    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("virtkitd", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _api_error(status: int, reason: str, body: bytes) -> ApiError:
    try:
        doc = json.loads(body)
        msg, hint, kind = doc.get("error") or body.decode(errors="replace"), doc.get("hint"), doc.get("kind")
    except (ValueError, AttributeError):
        msg, hint, kind = body.decode(errors="replace") or reason, None, None
    return ApiError(str(msg), hint, status, str(kind or "Error"))


class RawClient:
    """Every API call, returning the daemon's JSON as plain data (see :class:`Client` for models)."""

    def __init__(
        self,
        socket: str | Path | None = None,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 600.0,
        start_daemon: bool = False,
    ) -> None:
        self.url = url
        self.socket = Path(socket) if socket is not None else (None if url else default_socket())
        self.token = token if token is not None else os.environ.get("VIRTKIT_TOKEN")
        self.timeout = timeout
        if url:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise VirtkitError(f"cannot use {url!r} as virtkitd's address", hint="give http://HOST:PORT")
            self._tcp = parts
        # started on the first refused connection rather than checked up front: a round trip saved per command
        self._start_daemon = start_daemon and self.socket is not None

    # -- plumbing
    def close(self) -> None:
        """Nothing to release: every request opens its own connection (a unix socket connect costs ~50 us)."""

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self, timeout: float | None) -> http.client.HTTPConnection:
        if self.url:
            cls = http.client.HTTPSConnection if self._tcp.scheme == "https" else http.client.HTTPConnection
            return cls(self._tcp.hostname or "", self._tcp.port, timeout=timeout)
        return _UnixConnection(str(self.socket), timeout)

    def _headers(self, has_body: bool) -> dict[str, str]:
        h = {"Accept": "application/json"}
        if has_body:
            h["Content-Type"] = "application/json"
        if self.url and self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h

    def _path(self, path: str, params: dict[str, Any] | None) -> str:
        base = self._tcp.path.rstrip("/") if self.url else ""
        path = base + urllib.parse.quote(path)
        if params:
            q = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items() if v is not None}
            path += "?" + urllib.parse.urlencode(q)
        return path

    def _open(
        self, method: str, path: str, params: dict[str, Any] | None, body: Json, timeout: float | None
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        data = None if body is None else json.dumps(body).encode()
        conn = self._connect(timeout)
        try:
            try:
                conn.connect()
            except (FileNotFoundError, ConnectionRefusedError):
                if not self._start_daemon:
                    raise
                self._start_daemon = False
                self.ensure_daemon()  # nothing was sent: the request is safe to make now
                conn.connect()
            conn.request(method, self._path(path, params), body=data, headers=self._headers(data is not None))
            resp = conn.getresponse()
        except TimeoutError as e:
            conn.close()
            raise ApiError(f"virtkitd did not answer {method} {path} in time", None, 504, "Timeout") from e
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise DaemonUnreachable(
                f"virtkitd is not answering at {self.url or self.socket}: {e}",
                hint="start it with `virtkitd` (or let the CLI start it for local use)",
            ) from e
        if resp.status >= 400:
            err = _api_error(resp.status, resp.reason, resp.read())
            conn.close()
            raise err
        return conn, resp

    def request(
        self, method: str, path: str, params: dict[str, Any] | None = None, body: Json = None
    ) -> tuple[bytes, dict[str, str]]:
        """One call: the response body and headers, or :class:`ApiError` / :class:`DaemonUnreachable`."""
        conn, resp = self._open(method, path, params, body, self.timeout)
        try:
            return resp.read(), {k.lower(): v for k, v in resp.getheaders()}
        except TimeoutError as e:
            raise ApiError(f"virtkitd did not answer {method} {path} in time", None, 504, "Timeout") from e
        finally:
            conn.close()

    def call(self, method: str, path: str, params: dict[str, Any] | None = None, body: Json = None) -> Json:
        data, _ = self.request(method, path, params, body)
        return json.loads(data) if data else None

    def ping(self) -> bool:
        try:
            self.host()
            return True
        except DaemonUnreachable:
            return False

    def ensure_daemon(self, wait: float = 20.0) -> None:
        """Start a local virtkitd for this socket's state directory if none answers (the CLI's on-demand mode).
        It runs where this process runs: in its network namespace, with its environment."""
        if self.ping():
            return
        assert self.socket is not None
        home = self.socket.parent if self.socket != default_socket() else defaults.state_dir()
        home.mkdir(parents=True, exist_ok=True)
        log = open(home / "virtkitd.log", "ab")  # noqa: SIM115 - handed to the child
        env = dict(os.environ)
        env.setdefault("VIRTKIT_HOME", str(home))
        subprocess.Popen(
            [sys.executable, "-m", "virtkit.daemon", "--home", str(home), "--socket", str(self.socket)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env=env,
        )
        log.close()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.ping():
                return
            time.sleep(0.1)
        raise DaemonUnreachable(
            f"started virtkitd but it did not answer on {self.socket} within {wait:.0f}s",
            hint=f"see {home / 'virtkitd.log'}",
        )

    # -- host
    def host(self) -> Json:
        return self.call("GET", "/v1/host")

    # -- domains
    def list(self, all: bool = False) -> Json:
        return self.call("GET", "/v1/domains", {"all": all})

    def define(self, spec: dict[str, Any]) -> Json:
        return self.call("POST", "/v1/domains", body=spec)

    def info(self, name: str) -> Json:
        return self.call("GET", f"/v1/domains/{name}")

    def undefine(self, name: str) -> None:
        self.request("DELETE", f"/v1/domains/{name}")

    def action(self, name: str, action: str, body: dict[str, Any] | None = None) -> Json:
        """A lifecycle verb: start, shutdown, reboot, destroy, suspend or resume; returns the domain's info."""
        return self.call("POST", f"/v1/domains/{name}/{action}", body=body)

    def set_autostart(self, name: str, enabled: bool = True) -> Json:
        return self.call("PUT", f"/v1/domains/{name}/autostart", body={"enabled": enabled})

    def stats(self, name: str) -> Json:
        return self.call("GET", f"/v1/domains/{name}/stats")

    def interfaces(self, name: str) -> Json:
        return self.call("GET", f"/v1/domains/{name}/interfaces")

    def exec(self, name: str, argv: builtins.list[str], timeout: float = 60.0, stdin: str | None = None) -> Json:
        body: dict[str, Any] = {"argv": argv, "timeout": timeout}
        if stdin is not None:
            body["stdin"] = stdin
        return self.call("POST", f"/v1/domains/{name}/exec", body=body)

    def wait_agent(self, name: str, timeout: float = defaults.READY_TIMEOUT_S) -> None:
        self.request("POST", f"/v1/domains/{name}/agent/wait", {"timeout": timeout})

    def console(self, name: str, offset: int = 0) -> tuple[str, int]:
        """The console output from ``offset``; returns the text and the offset to continue from."""
        data, headers = self.request("GET", f"/v1/domains/{name}/console", {"offset": offset})
        return data.decode(errors="replace"), int(headers.get("x-console-offset", offset))

    def console_connect(self, name: str) -> ClientConnection:
        """An interactive console: a websockets sync connection (``send``/``recv`` bytes)."""
        from websockets.sync.client import connect, unix_connect

        path = f"/v1/domains/{name}/console/ws"
        if self.url:
            ws_url = self.url.replace("http", "ws", 1).rstrip("/") + path
            hdrs = {"Authorization": f"Bearer {self.token}"} if self.token else None
            return connect(ws_url, additional_headers=hdrs)
        return unix_connect(str(self.socket), "ws://virtkitd" + path)

    # -- snapshots
    def snapshot_create(self, name: str, snapshot: str, description: str = "", memory: bool | None = None) -> Json:
        body = {"name": snapshot, "description": description, "memory": memory}
        return self.call("POST", f"/v1/domains/{name}/snapshots", body=body)

    def snapshot_list(self, name: str) -> Json:
        return self.call("GET", f"/v1/domains/{name}/snapshots")

    def snapshot_revert(self, name: str, snapshot: str) -> Json:
        return self.call("POST", f"/v1/domains/{name}/snapshots/{snapshot}/revert")

    def snapshot_delete(self, name: str, snapshot: str) -> None:
        self.request("DELETE", f"/v1/domains/{name}/snapshots/{snapshot}")

    # -- networks (when the daemon has the network layer)
    def networks(self, all: bool = True) -> builtins.list[dict[str, Any]]:
        result: builtins.list[dict[str, Any]] = self.call("GET", "/v1/networks", {"all": all})
        return result

    def network_define(self, spec: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.call("POST", "/v1/networks", body=spec)
        return result

    def network_info(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", f"/v1/networks/{name}")
        return result

    def network_undefine(self, name: str) -> None:
        self.request("DELETE", f"/v1/networks/{name}")

    def network_start(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("POST", f"/v1/networks/{name}/start")
        return result

    def network_destroy(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("POST", f"/v1/networks/{name}/destroy")
        return result

    def network_set_autostart(self, name: str, enabled: bool = True) -> dict[str, Any]:
        result: dict[str, Any] = self.call("PUT", f"/v1/networks/{name}/autostart", body={"enabled": enabled})
        return result

    def network_leases(self, name: str) -> builtins.list[dict[str, Any]]:
        result: builtins.list[dict[str, Any]] = self.call("GET", f"/v1/networks/{name}/leases")
        return result

    # -- events
    def events(self, since: int | None = None, follow: bool = True) -> Iterator[dict[str, Any]]:
        """Lifecycle events as they happen (server-sent events); ``since`` replays the stored ones first."""
        conn, resp = self._open("GET", "/v1/events", {"follow": follow, "since": since}, None, None)
        try:
            for raw in resp:
                line = raw.decode(errors="replace").rstrip("\r\n")
                if line.startswith("data: "):
                    yield json.loads(line[6:])
        finally:
            conn.close()


class Client:
    """The API with its models: each method is :class:`RawClient`'s, its result validated into a model."""

    def __init__(
        self,
        socket: str | Path | None = None,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 600.0,
        start_daemon: bool = False,
    ) -> None:
        self.raw = RawClient(socket, url, token, timeout, start_daemon)
        self.url, self.socket, self.token = self.raw.url, self.raw.socket, self.raw.token

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ping(self) -> bool:
        return self.raw.ping()

    def ensure_daemon(self, wait: float = 20.0) -> None:
        self.raw.ensure_daemon(wait)

    # -- host
    def host(self) -> HostInfo:
        from virtkit.daemon.models import HostInfo

        return HostInfo.model_validate(self.raw.host())

    # -- domains
    def list(self, all: bool = False) -> builtins.list[DomainSummary]:
        from virtkit.daemon.models import DomainSummary

        return [DomainSummary.model_validate(x) for x in self.raw.list(all)]

    def define(self, spec: DomainSpec | dict[str, Any]) -> DomainInfo:
        body = spec if isinstance(spec, dict) else spec.model_dump(mode="json")
        return self._info(self.raw.define(body))

    def info(self, name: str) -> DomainInfo:
        return self._info(self.raw.info(name))

    dominfo = info

    def undefine(self, name: str) -> None:
        self.raw.undefine(name)

    @staticmethod
    def _info(doc: Json) -> DomainInfo:
        from virtkit.daemon.models import DomainInfo

        return DomainInfo.model_validate(doc)

    def start(self, name: str) -> DomainInfo:
        return self._info(self.raw.action(name, "start"))

    def shutdown(self, name: str, timeout: float = defaults.SHUTDOWN_TIMEOUT_S) -> DomainInfo:
        return self._info(self.raw.action(name, "shutdown", {"timeout": timeout}))

    def reboot(self, name: str) -> DomainInfo:
        return self._info(self.raw.action(name, "reboot"))

    def destroy(self, name: str) -> DomainInfo:
        return self._info(self.raw.action(name, "destroy"))

    def suspend(self, name: str) -> DomainInfo:
        return self._info(self.raw.action(name, "suspend"))

    def resume(self, name: str) -> DomainInfo:
        return self._info(self.raw.action(name, "resume"))

    def set_autostart(self, name: str, enabled: bool = True) -> DomainInfo:
        return self._info(self.raw.set_autostart(name, enabled))

    def stats(self, name: str) -> DomainStats:
        from virtkit.daemon.models import DomainStats

        return DomainStats.model_validate(self.raw.stats(name))

    domstats = stats

    def interfaces(self, name: str) -> builtins.list[Interface]:
        from virtkit.daemon.models import Interface

        return [Interface.model_validate(x) for x in self.raw.interfaces(name)]

    domifaddr = interfaces

    def exec(self, name: str, argv: builtins.list[str], timeout: float = 60.0, stdin: str | None = None) -> ExecResult:
        from virtkit.daemon.models import ExecResult

        return ExecResult.model_validate(self.raw.exec(name, argv, timeout, stdin))

    def wait_agent(self, name: str, timeout: float = defaults.READY_TIMEOUT_S) -> None:
        self.raw.wait_agent(name, timeout)

    def console(self, name: str, offset: int = 0) -> tuple[str, int]:
        """The console output from ``offset``; returns the text and the offset to continue from."""
        return self.raw.console(name, offset)

    def console_connect(self, name: str) -> ClientConnection:
        """An interactive console: a websockets sync connection (``send``/``recv`` bytes)."""
        return self.raw.console_connect(name)

    # -- snapshots
    def snapshot_create(
        self, name: str, snapshot: str, description: str = "", memory: bool | None = None
    ) -> SnapshotInfo:
        from virtkit.daemon.models import SnapshotInfo

        return SnapshotInfo.model_validate(self.raw.snapshot_create(name, snapshot, description, memory))

    def snapshot_list(self, name: str) -> builtins.list[SnapshotInfo]:
        from virtkit.daemon.models import SnapshotInfo

        return [SnapshotInfo.model_validate(x) for x in self.raw.snapshot_list(name)]

    def snapshot_revert(self, name: str, snapshot: str) -> DomainInfo:
        return self._info(self.raw.snapshot_revert(name, snapshot))

    def snapshot_delete(self, name: str, snapshot: str) -> None:
        self.raw.snapshot_delete(name, snapshot)

    # -- networks (plain JSON: the network layer's own types stay on the daemon's side)
    def networks(self, all: bool = True) -> builtins.list[dict[str, Any]]:
        return self.raw.networks(all)

    def network_define(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self.raw.network_define(spec)

    def network_info(self, name: str) -> dict[str, Any]:
        return self.raw.network_info(name)

    def network_undefine(self, name: str) -> None:
        self.raw.network_undefine(name)

    def network_start(self, name: str) -> dict[str, Any]:
        return self.raw.network_start(name)

    def network_destroy(self, name: str) -> dict[str, Any]:
        return self.raw.network_destroy(name)

    def network_set_autostart(self, name: str, enabled: bool = True) -> dict[str, Any]:
        return self.raw.network_set_autostart(name, enabled)

    def network_leases(self, name: str) -> builtins.list[dict[str, Any]]:
        return self.raw.network_leases(name)

    # -- events
    def events(self, since: int | None = None, follow: bool = True) -> Iterator[Event]:
        """Lifecycle events as they happen (server-sent events); ``since`` replays the stored ones first."""
        from virtkit.daemon.models import Event

        for ev in self.raw.events(since, follow):
            yield Event.model_validate(ev)
