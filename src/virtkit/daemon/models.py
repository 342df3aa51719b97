"""The API's wire types (pure pydantic; shared by the server and :class:`virtkit.Client`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from virtkit.daemon.domain import DomainSpec, DomainState

__all__ = [
    "AutostartRequest",
    "DomainInfo",
    "DomainSpec",
    "DomainState",
    "DomainStats",
    "DomainSummary",
    "ErrorBody",
    "Event",
    "ExecRequest",
    "ExecResult",
    "HostInfo",
    "Interface",
    "ShutdownRequest",
    "SnapshotInfo",
    "SnapshotRequest",
]


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(_M):
    error: str
    hint: str | None = None
    kind: str


class DomainSummary(_M):
    name: str
    state: DomainState
    autostart: bool
    engine: str


class DomainInfo(_M):
    name: str
    state: DomainState
    state_reason: str = ""
    autostart: bool
    engine: str = Field(description="engine asked for in the spec, or the one running it")
    technique: str | None = None
    vcpus: int
    memory_mib: int
    cpu_time_s: float | None = None
    uptime_s: float | None = None
    engine_pid: int | None = None
    supervisor_pid: int | None = None
    cgroup: dict[str, str] = Field(default_factory=dict, description="cgroup limit files as the kernel shows them")
    cgroup_paths: list[str] = Field(default_factory=list)
    spec: DomainSpec


class DomainStats(_M):
    name: str
    state: DomainState
    cpu_time_s: float | None = None
    vcpus: int
    memory_mib: int
    memory_used_bytes: int | None = None
    memory_limit_bytes: int | None = None
    block: list[dict[str, Any]] = Field(default_factory=list)
    net: list[dict[str, Any]] = Field(default_factory=list)


class Interface(_M):
    name: str
    mac: str | None = None
    addresses: list[str] = Field(default_factory=list, description="address/prefix")


class ExecRequest(_M):
    argv: list[str] = Field(min_length=1, max_length=1024)
    timeout: float | None = Field(default=60.0, gt=0, le=3600)
    stdin: str | None = Field(default=None, max_length=1024 * 1024)


class ExecResult(_M):
    exitcode: int
    stdout: str
    stderr: str


class ShutdownRequest(_M):
    timeout: float = Field(default=30.0, gt=0, le=3600)


class AutostartRequest(_M):
    enabled: bool


class SnapshotRequest(_M):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    description: str = Field(default="", max_length=4096)
    memory: bool | None = Field(default=None, description="include guest memory (default: when the engine can)")


class SnapshotInfo(_M):
    domain: str
    name: str
    created: float
    description: str
    memory: bool
    state: DomainState


class Event(_M):
    seq: int
    time: float
    type: str
    domain: str | None = None
    state: DomainState | None = None
    reason: str = ""


class HostInfo(_M):
    version: str
    api: str = "v1"
    schema_version: int
    cgroups: int | None
    engines: dict[str, str]
    domains: int
    running: int
