"""Domains: the typed spec a user writes, and the lifecycle state machine.

A :class:`DomainSpec` is what ``virtkit define`` reads (TOML, YAML or JSON). It is richer than the engine's
:class:`~virtkit.config.machine.MachineSpec` (autostart, cgroup limits, ``image: tiny``, networks by name) and is
resolved into one only when the domain starts, so a definition never depends on an image being built yet.
"""

from __future__ import annotations

import enum
import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from virtkit.config import defaults
from virtkit.config.machine import DiskSpec, EngineName, NicSpec, check_name
from virtkit.engines.base import VmState
from virtkit.errors import ConfigError

MAX_SPEC_BYTES = 256 * 1024
# What the engine process itself costs on top of guest RAM (QEMU's TCG code buffer, our VMM's Python).
DEFAULT_MEMORY_OVERHEAD_MIB = 512


# A domain's state is its machine's state: one enum, so the API and the engines never disagree on a value.
DomainState = VmState


class Action(enum.StrEnum):
    START = "start"
    SHUTDOWN = "shutdown"
    REBOOT = "reboot"
    DESTROY = "destroy"
    SUSPEND = "suspend"
    RESUME = "resume"
    UNDEFINE = "undefine"


_S = DomainState
# action -> states it is allowed from; the state it leads to is decided by what the engine reports.
ALLOWED: dict[Action, frozenset[DomainState]] = {
    Action.START: frozenset({_S.SHUTOFF, _S.CRASHED}),
    Action.SHUTDOWN: frozenset({_S.RUNNING, _S.PAUSED}),
    Action.REBOOT: frozenset({_S.RUNNING}),
    Action.DESTROY: frozenset({_S.RUNNING, _S.PAUSED, _S.CRASHED}),
    Action.SUSPEND: frozenset({_S.RUNNING}),
    Action.RESUME: frozenset({_S.PAUSED}),
    Action.UNDEFINE: frozenset({_S.SHUTOFF, _S.CRASHED}),
}
# where a successful action leaves the domain
TARGET: dict[Action, DomainState] = {
    Action.START: _S.RUNNING,
    Action.SHUTDOWN: _S.SHUTOFF,
    Action.REBOOT: _S.RUNNING,
    Action.DESTROY: _S.SHUTOFF,
    Action.SUSPEND: _S.PAUSED,
    Action.RESUME: _S.RUNNING,
    Action.UNDEFINE: _S.SHUTOFF,
}


class TransitionError(ConfigError):
    """An action that the domain's current state does not allow."""


def check_transition(name: str, state: DomainState, action: Action) -> None:
    if state not in ALLOWED[action]:
        fixes = {
            Action.START: f"it is already {state}; use `virtkit destroy {name}` first to restart it",
            Action.UNDEFINE: f"stop it first with `virtkit destroy {name}`",
            Action.RESUME: f"only a paused domain can be resumed; it is {state}",
            Action.SUSPEND: f"only a running domain can be suspended; it is {state}",
        }
        hint = fixes.get(action, f"start it first with `virtkit start {name}`")
        raise TransitionError(f"cannot {action} domain {name!r}: it is {state}", hint=hint)


_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]i?B?|[kmgt])?\s*$")
_SIZE_MIB = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def parse_mib(v: Any) -> Any:
    """``512``, ``"512M"``, ``"1G"``, ``"1GiB"`` -> MiB (int). Anything else goes on to pydantic's check."""
    if isinstance(v, str):
        m = _SIZE_RE.match(v)
        if not m:
            raise ValueError(f"{v!r} is not a size; write a number of MiB or e.g. '512M', '2G'")
        unit = (m.group(2) or "M")[0].upper()
        mib = int(m.group(1)) * _SIZE_MIB[unit]
        if mib != int(mib):
            raise ValueError(f"{v!r} is not a whole number of MiB")
        return int(mib)
    return v


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitsSpec(_Spec):
    """cgroup limits for the VM's process group (supervisor + engine)."""

    # CPU time as a number of host CPUs (1.5 = one and a half CPUs); default: the domain's vcpus.
    cpus: float | None = Field(default=None, gt=0, le=1024)
    # Hard memory limit for the whole group; default: guest memory + an overhead for the engine.
    memory_mib: int | None = Field(default=None, ge=64, le=1024 * 1024 * 1024)

    @field_validator("memory_mib", mode="before")
    @classmethod
    def _mem(cls, v: Any) -> Any:
        return parse_mib(v)


class NetSpec(_Spec):
    """A NIC in a domain spec. ``network`` names a virtkit network (``default``); ``user`` is QEMU's slirp."""

    network: str | None = None
    kind: Literal["user", "tap", "macvtap"] | None = None
    mac: str | None = None
    ifname: str | None = None
    forwards: tuple[tuple[Literal["tcp", "udp"], int, int], ...] = ()

    @model_validator(mode="after")
    def _one(self) -> NetSpec:
        if self.network is None and self.kind is None:
            raise ValueError("a NIC needs either network (e.g. 'default') or kind ('user', 'tap', 'macvtap')")
        if self.network is not None and self.kind is not None:
            raise ValueError("give a NIC either network or kind, not both")
        if self.kind is not None:
            NicSpec(kind=self.kind, mac=self.mac, ifname=self.ifname, forwards=self.forwards)
        return self


class DomainBoot(_Spec):
    kernel: Path | None = None
    initrd: Path | None = None
    cmdline: str | None = None
    disk: Path | None = None

    @model_validator(mode="after")
    def _one(self) -> DomainBoot:
        if self.kernel is None and self.disk is None:
            raise ValueError("boot needs a kernel (direct boot) or a disk")
        if self.kernel is not None and self.disk is not None:
            raise ValueError("boot takes a kernel or a disk, not both")
        if self.kernel is None and (self.initrd is not None or self.cmdline is not None):
            raise ValueError("initrd and cmdline only go with kernel")
        return self


class DomainSpec(_Spec):
    """A domain definition. Either ``image`` (``tiny``: the default image) or ``boot`` says what it runs."""

    name: str
    engine: EngineName = "auto"
    vcpus: int = Field(default=defaults.DEFAULT_VCPUS, ge=1, le=64)
    memory: int = Field(default=defaults.DEFAULT_MEMORY_MIB, ge=32, le=1024 * 1024, description="MiB")
    image: str | None = None
    boot: DomainBoot | None = None
    disks: tuple[DiskSpec, ...] = ()
    nics: tuple[NetSpec, ...] = ()
    autostart: bool = False
    limits: LimitsSpec = LimitsSpec()
    agent: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "domain")

    @field_validator("memory", mode="before")
    @classmethod
    def _mem(cls, v: Any) -> Any:
        return parse_mib(v)

    @field_validator("nics", mode="before")
    @classmethod
    def _nics(cls, v: Any) -> Any:
        # "default" is short for {network = "default"}; "user" for {kind = "user"}
        if isinstance(v, list | tuple):
            out = []
            for item in v:
                if isinstance(item, str):
                    out.append({"kind": "user"} if item == "user" else {"network": item})
                else:
                    out.append(item)
            return out
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^[a-z0-9][a-z0-9_.-]{0,62}$", v):
            raise ValueError(f"{v!r} is not an image name such as 'tiny'")
        return v

    @model_validator(mode="after")
    def _what(self) -> DomainSpec:
        if self.image is None and self.boot is None:
            raise ValueError("say what the domain boots: image = 'tiny' or a boot section with a kernel")
        if self.image is not None and self.boot is not None:
            raise ValueError("give either image or boot, not both")
        return self

    def cpu_limit(self) -> float:
        return self.limits.cpus if self.limits.cpus is not None else float(self.vcpus)

    def memory_limit_mib(self) -> int:
        if self.limits.memory_mib is not None:
            return self.limits.memory_mib
        return self.memory + DEFAULT_MEMORY_OVERHEAD_MIB


def format_validation_error(err: ValidationError, prefix: str = "") -> str:
    """One line per problem, each naming its field path (``nics.0.mac: ...``)."""
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"] if p not in ("body",))
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{prefix}{path or '(spec)'}: {msg}")
    return "; ".join(lines)


def validate_spec(data: Any) -> DomainSpec:
    if not isinstance(data, dict):
        raise ConfigError("a domain spec must be a table/mapping", hint='start it with name = "vm1"')
    try:
        return DomainSpec.model_validate(data)
    except ValidationError as e:
        raise ConfigError(
            f"invalid domain spec: {format_validation_error(e)}",
            hint="fix the named fields; see `virtkit define --help` for the format",
        ) from e


def parse_spec_text(text: str, fmt: str) -> DomainSpec:
    """Parse a spec written as ``toml``, ``yaml`` or ``json``."""
    return validate_spec(parse_mapping(text, fmt))


def parse_mapping(text: str, fmt: str) -> Any:
    """TOML, YAML or JSON text -> plain data (ConfigError naming the format on a syntax error)."""
    if len(text.encode()) > MAX_SPEC_BYTES:
        raise ConfigError(f"spec is larger than {MAX_SPEC_BYTES // 1024} KiB", hint="a spec is a few lines")
    try:
        if fmt == "toml":
            return tomllib.loads(text)
        if fmt == "json":
            return json.loads(text)
        if fmt in ("yaml", "yml"):
            try:
                import yaml
            except ImportError as e:  # pragma: no cover - depends on the environment
                raise ConfigError("YAML specs need PyYAML", hint="pip install pyyaml, or write TOML") from e
            return yaml.safe_load(text)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"cannot parse the {fmt.upper()} spec: {e}", hint=f"check the {fmt.upper()} syntax") from e
    raise ConfigError(f"unknown spec format {fmt!r}", hint="use a .toml, .yaml or .json file")


def read_mapping(path: Path) -> Any:
    fmt = path.suffix.lstrip(".").lower() or "toml"
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}", hint="give the path of a spec file") from e
    return parse_mapping(text, fmt)


def load_spec_file(path: Path) -> DomainSpec:
    return validate_spec(read_mapping(path))
