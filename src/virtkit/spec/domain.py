"""The user-facing spec: what ``virtkit define`` reads (TOML, YAML or JSON) and what ``virtkit run``'s flags mean.

A :class:`DomainSpec` says what a user wants (``image: tiny``, networks by name, sizes like ``"512M"``,
autostart, cgroup limits). It is validated here, with every error naming its field path and the fix, and turned
into the engines' :class:`~virtkit.spec.machine.MachineConfig` only when the machine starts
(:func:`virtkit.spec.resolve.resolve`), so a definition never depends on an image being built yet.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from virtkit.config import defaults
from virtkit.errors import ConfigError
from virtkit.spec.machine import (
    MAX_MEMORY_MIB,
    MAX_VCPUS,
    MIN_MEMORY_MIB,
    DiskFormat,
    EngineName,
    Forward,
    NicConfig,
    NicKind,
    check_mac,
    check_name,
)

MAX_SPEC_BYTES = 256 * 1024
# What the engine process itself costs on top of guest RAM (QEMU's TCG code buffer, our VMM's Python).
DEFAULT_MEMORY_OVERHEAD_MIB = 512

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


class DiskSpec(_Spec):
    """A data disk. Its format is named (default ``raw``), never guessed from the file at each start: a guest
    that writes a qcow2 header into a raw disk must not turn it into an image with a backing file."""

    path: Path
    format: DiskFormat = "raw"
    readonly: bool = False


class NetSpec(_Spec):
    """A NIC in a domain spec. ``network`` names a virtkit network (``default``); ``user`` is QEMU's slirp."""

    network: str | None = None
    kind: NicKind | None = None
    mac: str | None = None
    ifname: str | None = None
    forwards: tuple[Forward, ...] = ()

    @field_validator("mac")
    @classmethod
    def _mac(cls, v: str | None) -> str | None:
        return None if v is None else check_mac(v)

    @model_validator(mode="after")
    def _one(self) -> NetSpec:
        if self.network is None and self.kind is None:
            raise ValueError("a NIC needs either network (e.g. 'default') or kind ('user', 'tap', 'macvtap')")
        if self.network is not None and self.kind is not None:
            raise ValueError("give a NIC either network or kind, not both")
        if self.kind is not None:
            NicConfig(kind=self.kind, mac=self.mac, ifname=self.ifname, forwards=self.forwards)
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
    vcpus: int = Field(default=defaults.DEFAULT_VCPUS, ge=1, le=MAX_VCPUS)
    memory: int = Field(default=defaults.DEFAULT_MEMORY_MIB, ge=MIN_MEMORY_MIB, le=MAX_MEMORY_MIB, description="MiB")
    image: str | None = None
    boot: DomainBoot | None = None
    disks: tuple[DiskSpec, ...] = ()
    nics: tuple[NetSpec, ...] = ()
    autostart: bool = False
    limits: LimitsSpec = LimitsSpec()
    agent: bool = True
    # KVM's paravirtual CPUID leaves (kvm-clock, PV EOI, ...) where the accelerator is KVM
    paravirt: bool = True

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
