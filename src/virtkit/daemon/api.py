"""The REST API (FastAPI). Every handler is a thin call into :class:`~virtkit.daemon.service.Service`.

Errors are always ``{"error", "hint", "kind"}`` with a 4xx for anything the caller can fix: 400 bad
argument, 401 wrong token, 404 unknown name, 409 wrong state or duplicate, 413 oversize body, 422 invalid
spec (the message names the field path). Requests over TCP need ``Authorization: Bearer <token>``; requests
over the unix socket are trusted (its file mode decides who may connect).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from virtkit import __version__
from virtkit.daemon import ctl
from virtkit.daemon.domain import TransitionError, format_validation_error
from virtkit.daemon.models import (
    AutostartRequest,
    DomainInfo,
    DomainSpec,
    DomainStats,
    DomainSummary,
    ErrorBody,
    ExecRequest,
    ExecResult,
    HostInfo,
    Interface,
    ShutdownRequest,
    SnapshotInfo,
    SnapshotRequest,
)
from virtkit.daemon.service import Service
from virtkit.daemon.store import Conflict, NotFound
from virtkit.errors import (
    AgentError,
    ConfigError,
    EngineError,
    GuestTimeout,
    HostError,
    ImageError,
    VirtkitError,
)

if TYPE_CHECKING:
    from virtkit.network.manager import NetworkManager

MAX_BODY = 1024 * 1024
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

STATUS: list[tuple[type[Exception], int]] = [
    (NotFound, 404),
    (Conflict, 409),
    (TransitionError, 409),
    (ConfigError, 400),
    (ImageError, 422),
    (GuestTimeout, 504),
    (ctl.SupervisorGone, 409),
    (EngineError, 502),
    (AgentError, 502),
    (HostError, 503),
]


def status_for(e: Exception) -> int:
    for cls, code in STATUS:
        if isinstance(e, cls):
            return code
    return 500


def _err(status: int, error: str, kind: str, hint: str | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "hint": hint, "kind": kind}, status_code=status)


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": data})


class Guard:
    """ASGI middleware: bearer token on TCP, and a hard cap on request body size (counted, not trusted)."""

    def __init__(self, app: ASGIApp, token: str | None, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.token = token
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        server = scope.get("server")
        over_tcp = isinstance(server, tuple | list) and server[1] is not None
        if over_tcp:
            headers = dict(scope.get("headers") or [])
            auth = headers.get(b"authorization", b"").decode(errors="replace")
            given = auth[7:] if auth.lower().startswith("bearer ") else ""
            if not self.token or not hmac.compare_digest(given.encode(), self.token.encode()):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                await _send_json(
                    send,
                    401,
                    {
                        "error": "missing or wrong API token" if self.token else "TCP access has no token configured",
                        "hint": "send 'Authorization: Bearer <token>' with the token from virtkitd --token-file",
                        "kind": "AuthError",
                    },
                    [(b"www-authenticate", b"Bearer")],
                )
                return
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            length = headers.get(b"content-length")
            if length is not None:
                try:
                    too_big = int(length) > self.max_body
                except ValueError:
                    too_big = True
                if too_big:
                    await self._too_big(send)
                    return
            if length is None:
                # no declared length (chunked): read it all here, counting, and replay it to the app
                chunks: list[bytes] = []
                seen = 0
                while True:
                    msg = await receive()
                    if msg["type"] != "http.request":
                        break
                    seen += len(msg.get("body", b""))
                    if seen > self.max_body:
                        await self._too_big(send)
                        return
                    chunks.append(msg.get("body", b""))
                    if not msg.get("more_body"):
                        break
                body = b"".join(chunks)
                replayed = False

                async def replay() -> Message:
                    nonlocal replayed
                    if not replayed:
                        replayed = True
                        return {"type": "http.request", "body": body, "more_body": False}
                    return await receive()

                await self.app(scope, replay, send)
                return
        await self.app(scope, receive, send)

    async def _too_big(self, send: Send) -> None:
        await _send_json(
            send,
            413,
            {
                "error": f"request body is larger than {self.max_body} bytes",
                "hint": "a domain spec or exec request is a few KiB",
                "kind": "TooLarge",
            },
            [],
        )


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": d}
    for code, d in (
        (400, "bad argument"),
        (401, "missing or wrong token"),
        (404, "unknown domain or snapshot"),
        (409, "wrong state or duplicate"),
        (413, "body too large"),
        (422, "invalid spec"),
        (502, "engine or agent failure"),
        (503, "host lacks something"),
        (504, "guest timeout"),
    )
}


def create_app(service: Service, token: str | None = None, networks: NetworkManager | None = None) -> FastAPI:
    """The API over ``service``; the /v1/networks routes manage ``networks`` (none: this daemon leaves host
    networks alone, and says so)."""
    app = FastAPI(title="virtkitd", version=__version__, description=__doc__, responses=ERRORS)
    svc = service

    @app.exception_handler(VirtkitError)
    async def _virtkit_error(request: Request, e: VirtkitError) -> JSONResponse:
        return _err(status_for(e), e.message, type(e).__name__, e.hint)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, e: RequestValidationError) -> JSONResponse:
        parts = []
        for err in e.errors():
            loc = [str(p) for p in err.get("loc", ()) if p != "body"]
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            parts.append(f"{'.'.join(loc) or '(body)'}: {msg}")
        return _err(
            422,
            "invalid request: " + "; ".join(parts),
            "ConfigError",
            "fix the named fields (see /openapi.json for the schema)",
        )

    @app.exception_handler(Exception)
    async def _other(request: Request, e: Exception) -> JSONResponse:
        return _err(
            500,
            f"internal error: {type(e).__name__}: {e}",
            "InternalError",
            "this is a virtkit bug; the daemon log has the traceback",
        )

    # -- host
    @app.get("/v1/host", response_model=HostInfo, tags=["host"])
    def host() -> HostInfo:
        return svc.host()

    # -- domains
    summaries = TypeAdapter(list[DomainSummary])

    @app.get("/v1/domains", response_model=list[DomainSummary], tags=["domains"])
    async def list_domains(all: bool = Query(False, description="include shut-off domains")) -> Response:
        # hot path: one indexed read, answered on the event loop (no thread hop), serialized once
        return Response(summaries.dump_json(svc.list_domains(all)), media_type="application/json")

    @app.post("/v1/domains", response_model=DomainInfo, status_code=201, tags=["domains"])
    def define(spec: DomainSpec) -> DomainInfo:
        return svc.define(spec)

    @app.get("/v1/domains/{name}", response_model=DomainInfo, tags=["domains"])
    def dominfo(name: str) -> DomainInfo:
        return svc.info(name)

    @app.delete("/v1/domains/{name}", status_code=204, tags=["domains"])
    def undefine(name: str) -> Response:
        svc.undefine(name)
        return Response(status_code=204)

    @app.post("/v1/domains/{name}/start", response_model=DomainInfo, tags=["lifecycle"])
    def start(name: str) -> DomainInfo:
        return svc.start(name)

    @app.post("/v1/domains/{name}/shutdown", response_model=DomainInfo, tags=["lifecycle"])
    def shutdown(name: str, req: ShutdownRequest | None = None) -> DomainInfo:
        return svc.shutdown(name, (req or ShutdownRequest()).timeout)

    @app.post("/v1/domains/{name}/reboot", response_model=DomainInfo, tags=["lifecycle"])
    def reboot(name: str) -> DomainInfo:
        return svc.reboot(name)

    @app.post("/v1/domains/{name}/destroy", response_model=DomainInfo, tags=["lifecycle"])
    def destroy(name: str) -> DomainInfo:
        return svc.destroy(name)

    @app.post("/v1/domains/{name}/suspend", response_model=DomainInfo, tags=["lifecycle"])
    def suspend(name: str) -> DomainInfo:
        return svc.suspend(name)

    @app.post("/v1/domains/{name}/resume", response_model=DomainInfo, tags=["lifecycle"])
    def resume(name: str) -> DomainInfo:
        return svc.resume(name)

    @app.put("/v1/domains/{name}/autostart", response_model=DomainInfo, tags=["domains"])
    def autostart(name: str, req: AutostartRequest) -> DomainInfo:
        return svc.set_autostart(name, req.enabled)

    @app.get("/v1/domains/{name}/stats", response_model=DomainStats, tags=["domains"])
    def domstats(name: str) -> DomainStats:
        return svc.stats(name)

    @app.get("/v1/domains/{name}/interfaces", response_model=list[Interface], tags=["guest"])
    def domifaddr(name: str) -> list[Interface]:
        return svc.interfaces(name)

    @app.post("/v1/domains/{name}/exec", response_model=ExecResult, tags=["guest"])
    def exec_(name: str, req: ExecRequest) -> ExecResult:
        return svc.exec(name, req.argv, req.timeout, req.stdin)

    @app.post("/v1/domains/{name}/agent/wait", status_code=204, tags=["guest"])
    def agent_wait(name: str, timeout: float = Query(120.0, gt=0, le=3600)) -> Response:
        svc.wait_agent(name, timeout)
        return Response(status_code=204)

    @app.get("/v1/domains/{name}/console", response_class=PlainTextResponse, tags=["guest"])
    def console(name: str, offset: int = Query(0, ge=0, le=2**53)) -> PlainTextResponse:
        path = svc.console_log_path(name)
        data = b""
        if path is not None:
            with contextlib.suppress(OSError), path.open("rb") as f:
                f.seek(offset)
                data = f.read(4 * 1024 * 1024)
        return PlainTextResponse(data.decode(errors="replace"), headers={"X-Console-Offset": str(offset + len(data))})

    @app.websocket("/v1/domains/{name}/console/ws")
    async def console_ws(ws: WebSocket, name: str) -> None:
        """Interactive console: the server sends what the guest writes; what the client sends is typed in."""
        try:
            path = await run_in_threadpool(svc.console_log_path, name)
        except VirtkitError as e:
            await ws.close(code=4404, reason=e.message[:120])
            return
        if path is None:
            await ws.close(code=4409, reason=f"domain {name} is not running")
            return
        await ws.accept()

        async def pump_out() -> None:
            pos = 0
            while True:
                chunk = b""
                with contextlib.suppress(OSError), path.open("rb") as f:
                    f.seek(pos)
                    chunk = f.read(65536)
                if chunk:
                    pos += len(chunk)
                    await ws.send_bytes(chunk)
                else:
                    if not svc.is_running(name):
                        await ws.close(code=1000, reason="domain stopped")
                        return
                    await asyncio.sleep(0.05)

        out = asyncio.create_task(pump_out())
        try:
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                data = msg.get("bytes") or (msg.get("text") or "").encode()
                if data:
                    try:
                        await run_in_threadpool(svc.console_write, name, data)
                    except VirtkitError as e:
                        await ws.send_text(f"\r\n[virtkit: {e}]\r\n")
        except WebSocketDisconnect:
            pass
        finally:
            out.cancel()

    # -- snapshots
    @app.get("/v1/domains/{name}/snapshots", response_model=list[SnapshotInfo], tags=["snapshots"])
    def snapshot_list(name: str) -> list[SnapshotInfo]:
        return svc.snapshot_list(name)

    @app.post("/v1/domains/{name}/snapshots", response_model=SnapshotInfo, status_code=201, tags=["snapshots"])
    def snapshot_create(name: str, req: SnapshotRequest) -> SnapshotInfo:
        return svc.snapshot_create(name, req.name, req.description, req.memory)

    @app.post("/v1/domains/{name}/snapshots/{snap}/revert", response_model=DomainInfo, tags=["snapshots"])
    def snapshot_revert(name: str, snap: str) -> DomainInfo:
        return svc.snapshot_revert(name, snap)

    @app.delete("/v1/domains/{name}/snapshots/{snap}", status_code=204, tags=["snapshots"])
    def snapshot_delete(name: str, snap: str) -> Response:
        svc.snapshot_delete(name, snap)
        return Response(status_code=204)

    # -- events
    @app.get(
        "/v1/events",
        tags=["events"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def events(
        since: int | None = Query(None, ge=0, le=2**53), follow: bool = Query(True, description="keep the stream open")
    ) -> StreamingResponse:
        """Server-sent events: one ``data:`` JSON object per lifecycle change, ``id:`` its sequence number."""
        q = svc.events.subscribe()
        backlog = await run_in_threadpool(svc.events.since, since) if since is not None else []

        async def gen() -> AsyncIterator[bytes]:
            last = since or 0
            try:
                for ev in backlog:
                    last = int(ev["seq"])
                    yield f"id: {last}\ndata: {json.dumps(ev)}\n\n".encode()
                if not follow:
                    return
                yield b": subscribed\n\n"
                while True:
                    try:
                        ev = await asyncio.wait_for(q.get(), timeout=15)
                    except TimeoutError:
                        yield b": keepalive\n\n"
                        continue
                    if int(ev["seq"]) <= last:
                        continue
                    last = int(ev["seq"])
                    yield f"id: {last}\ndata: {json.dumps(ev)}\n\n".encode()
            finally:
                svc.events.unsubscribe(q)

        return StreamingResponse(gen(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    # -- networks (only when the network layer is part of this build)
    def _nm() -> NetworkManager:
        nm = networks
        if nm is None:
            raise ConfigError("this virtkit has no network layer", hint="use nics = ['user'] in domain specs")
        return nm

    @app.get("/v1/networks", tags=["networks"])
    def net_list(all: bool = Query(True, description="include inactive networks")) -> list[dict[str, Any]]:
        nm = networks
        return [] if nm is None else [_plain(n) for n in nm.list(all=all)]

    @app.post("/v1/networks", status_code=201, tags=["networks"])
    def net_define(body: dict[str, Any]) -> dict[str, Any]:
        """Define a network from its spec (the network layer's NetworkSpec, as JSON)."""
        nm = _nm()
        from virtkit.network.spec import NetworkSpec

        try:
            spec = NetworkSpec.model_validate(body)
        except ValidationError as e:
            raise ConfigError(f"invalid network spec: {format_validation_error(e)}", hint="fix the named fields") from e
        return dict(_plain(nm.define(spec)))

    @app.get("/v1/networks/{name}", tags=["networks"])
    def net_info(name: str) -> dict[str, Any]:
        return dict(_plain(_nm().info(name)))

    @app.delete("/v1/networks/{name}", status_code=204, tags=["networks"])
    def net_undefine(name: str) -> Response:
        _nm().undefine(name)
        return Response(status_code=204)

    @app.post("/v1/networks/{name}/start", tags=["networks"])
    def net_start(name: str) -> dict[str, Any]:
        return dict(_plain(_nm().start(name)))

    @app.post("/v1/networks/{name}/destroy", tags=["networks"])
    def net_destroy(name: str) -> dict[str, Any]:
        return dict(_plain(_nm().stop(name)))

    @app.put("/v1/networks/{name}/autostart", tags=["networks"])
    def net_autostart(name: str, req: AutostartRequest) -> dict[str, Any]:
        return dict(_plain(_nm().set_autostart(name, req.enabled)))

    @app.get("/v1/networks/{name}/leases", tags=["networks"])
    def net_leases(name: str) -> list[dict[str, Any]]:
        return [_plain(x) for x in _nm().leases(name)]

    return app


def _plain(v: Any) -> Any:
    if hasattr(v, "model_dump"):
        return v.model_dump(mode="json")
    if hasattr(v, "__dataclass_fields__"):
        return {k: _plain(getattr(v, k)) for k in v.__dataclass_fields__}
    if isinstance(v, Path | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(v)
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return v


def wrap(app: FastAPI, token: str | None) -> ASGIApp:
    return Guard(app, token)


__all__ = ["create_app", "format_validation_error", "wrap"]
