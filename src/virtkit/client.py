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
"""

from __future__ import annotations

import builtins
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from virtkit.config import defaults
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
from virtkit.errors import VirtkitError

__all__ = ["ApiError", "Client", "DaemonUnreachable", "default_socket"]


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


class Client:
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
        headers = {"Authorization": f"Bearer {self.token}"} if (url and self.token) else {}
        if url:
            self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout)
        else:
            transport = httpx.HTTPTransport(uds=str(self.socket))
            self._http = httpx.Client(transport=transport, base_url="http://virtkitd", timeout=timeout)
        if start_daemon and self.socket is not None:
            self.ensure_daemon()

    # -- plumbing
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            r = self._http.request(method, path, **kw)
        except (httpx.ConnectError, httpx.RemoteProtocolError) as e:
            where = self.url or self.socket
            raise DaemonUnreachable(
                f"virtkitd is not answering at {where}: {e}",
                hint="start it with `virtkitd` (or let the CLI start it for local use)",
            ) from e
        except httpx.TimeoutException as e:
            raise ApiError(f"virtkitd did not answer {method} {path} in time", None, 504, "Timeout") from e
        if r.status_code >= 400:
            try:
                body = r.json()
                msg, hint, kind = body.get("error") or r.text, body.get("hint"), body.get("kind") or "Error"
            except (ValueError, AttributeError):
                msg, hint, kind = r.text or r.reason_phrase, None, "Error"
            raise ApiError(str(msg), hint, r.status_code, str(kind))
        return r

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self._request(method, path, **kw).json()

    def ping(self) -> bool:
        try:
            self.host()
            return True
        except DaemonUnreachable:
            return False

    def ensure_daemon(self, wait: float = 20.0) -> None:
        """Start a local virtkitd for this socket's state directory if none answers (the CLI's on-demand mode)."""
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
    def host(self) -> HostInfo:
        return HostInfo.model_validate(self._json("GET", "/v1/host"))

    # -- domains
    def list(self, all: bool = False) -> builtins.list[DomainSummary]:
        return [DomainSummary.model_validate(x) for x in self._json("GET", "/v1/domains", params={"all": all})]

    def define(self, spec: DomainSpec | dict[str, Any]) -> DomainInfo:
        body = spec.model_dump(mode="json") if isinstance(spec, DomainSpec) else spec
        return DomainInfo.model_validate(self._json("POST", "/v1/domains", json=body))

    def info(self, name: str) -> DomainInfo:
        return DomainInfo.model_validate(self._json("GET", f"/v1/domains/{name}"))

    dominfo = info

    def undefine(self, name: str) -> None:
        self._request("DELETE", f"/v1/domains/{name}")

    def _action(self, name: str, action: str, body: dict[str, Any] | None = None) -> DomainInfo:
        return DomainInfo.model_validate(self._json("POST", f"/v1/domains/{name}/{action}", json=body))

    def start(self, name: str) -> DomainInfo:
        return self._action(name, "start")

    def shutdown(self, name: str, timeout: float = defaults.SHUTDOWN_TIMEOUT_S) -> DomainInfo:
        return self._action(name, "shutdown", {"timeout": timeout})

    def reboot(self, name: str) -> DomainInfo:
        return self._action(name, "reboot")

    def destroy(self, name: str) -> DomainInfo:
        return self._action(name, "destroy")

    def suspend(self, name: str) -> DomainInfo:
        return self._action(name, "suspend")

    def resume(self, name: str) -> DomainInfo:
        return self._action(name, "resume")

    def set_autostart(self, name: str, enabled: bool = True) -> DomainInfo:
        return DomainInfo.model_validate(self._json("PUT", f"/v1/domains/{name}/autostart", json={"enabled": enabled}))

    def stats(self, name: str) -> DomainStats:
        return DomainStats.model_validate(self._json("GET", f"/v1/domains/{name}/stats"))

    domstats = stats

    def interfaces(self, name: str) -> builtins.list[Interface]:
        return [Interface.model_validate(x) for x in self._json("GET", f"/v1/domains/{name}/interfaces")]

    domifaddr = interfaces

    def exec(self, name: str, argv: builtins.list[str], timeout: float = 60.0, stdin: str | None = None) -> ExecResult:
        body: dict[str, Any] = {"argv": argv, "timeout": timeout}
        if stdin is not None:
            body["stdin"] = stdin
        return ExecResult.model_validate(self._json("POST", f"/v1/domains/{name}/exec", json=body))

    def wait_agent(self, name: str, timeout: float = defaults.READY_TIMEOUT_S) -> None:
        self._request("POST", f"/v1/domains/{name}/agent/wait", params={"timeout": timeout})

    def console(self, name: str, offset: int = 0) -> tuple[str, int]:
        """The console output from ``offset``; returns the text and the offset to continue from."""
        r = self._request("GET", f"/v1/domains/{name}/console", params={"offset": offset})
        return r.text, int(r.headers.get("X-Console-Offset", offset))

    def console_connect(self, name: str) -> Any:
        """An interactive console: a websockets sync connection (``send``/``recv`` bytes)."""
        from websockets.sync.client import connect, unix_connect

        path = f"/v1/domains/{name}/console/ws"
        if self.url:
            ws_url = self.url.replace("http", "ws", 1).rstrip("/") + path
            hdrs = {"Authorization": f"Bearer {self.token}"} if self.token else None
            return connect(ws_url, additional_headers=hdrs)
        return unix_connect(str(self.socket), "ws://virtkitd" + path)

    # -- snapshots
    def snapshot_create(
        self, name: str, snapshot: str, description: str = "", memory: bool | None = None
    ) -> SnapshotInfo:
        return SnapshotInfo.model_validate(
            self._json(
                "POST",
                f"/v1/domains/{name}/snapshots",
                json={"name": snapshot, "description": description, "memory": memory},
            )
        )

    def snapshot_list(self, name: str) -> builtins.list[SnapshotInfo]:
        return [SnapshotInfo.model_validate(x) for x in self._json("GET", f"/v1/domains/{name}/snapshots")]

    def snapshot_revert(self, name: str, snapshot: str) -> DomainInfo:
        return DomainInfo.model_validate(self._json("POST", f"/v1/domains/{name}/snapshots/{snapshot}/revert"))

    def snapshot_delete(self, name: str, snapshot: str) -> None:
        self._request("DELETE", f"/v1/domains/{name}/snapshots/{snapshot}")

    # -- networks (when the daemon has the network layer)
    def networks(self, all: bool = True) -> builtins.list[dict[str, Any]]:
        result: builtins.list[dict[str, Any]] = self._json("GET", "/v1/networks", params={"all": all})
        return result

    def network_define(self, spec: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._json("POST", "/v1/networks", json=spec)
        return result

    def network_info(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/v1/networks/{name}")
        return result

    def network_undefine(self, name: str) -> None:
        self._request("DELETE", f"/v1/networks/{name}")

    def network_start(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("POST", f"/v1/networks/{name}/start")
        return result

    def network_destroy(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("POST", f"/v1/networks/{name}/destroy")
        return result

    def network_set_autostart(self, name: str, enabled: bool = True) -> dict[str, Any]:
        result: dict[str, Any] = self._json("PUT", f"/v1/networks/{name}/autostart", json={"enabled": enabled})
        return result

    def network_leases(self, name: str) -> builtins.list[dict[str, Any]]:
        result: builtins.list[dict[str, Any]] = self._json("GET", f"/v1/networks/{name}/leases")
        return result

    # -- events
    def events(self, since: int | None = None, follow: bool = True) -> Iterator[Event]:
        """Lifecycle events as they happen (server-sent events); ``since`` replays the stored ones first."""
        params: dict[str, Any] = {"follow": follow}
        if since is not None:
            params["since"] = since
        try:
            with self._http.stream("GET", "/v1/events", params=params, timeout=None) as r:
                if r.status_code >= 400:
                    r.read()
                    body = r.json()
                    raise ApiError(
                        body.get("error", r.text), body.get("hint"), r.status_code, body.get("kind", "Error")
                    )
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        yield Event.model_validate(json.loads(line[6:]))
        except httpx.ConnectError as e:
            raise DaemonUnreachable(f"virtkitd is not answering: {e}") from e
