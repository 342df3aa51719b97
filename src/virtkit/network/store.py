"""Persisted network definitions: one JSON file per network, written atomically (temp file + rename).

``default`` is created the first time a store is opened on a state directory, once: undefining it sticks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from virtkit.errors import ConfigError
from virtkit.fsutil import write_atomic
from virtkit.network.spec import NetworkSpec, default_network


def spec_from_dict(data: Any, source: str) -> NetworkSpec:
    """Validate a definition, turning pydantic's report into one line that names the field."""
    try:
        return NetworkSpec.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(
            f"{source}: {where + ': ' if where else ''}{msg}",
            hint="fix that field and define the network again",
        ) from e


class NetworkStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        marker = root / ".initialized"
        if not marker.exists():
            if not self.path("default").exists():
                self.save(default_network())
            write_atomic(marker, "default network created\n")

    def path(self, name: str) -> Path:
        return self.root / f"{name}.json"

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.json"))

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def load(self, name: str) -> NetworkSpec:
        p = self.path(name)
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(
                f"network {name!r} is not defined",
                hint="see `virtkit net-list --all`, or define it with `virtkit net-define FILE`",
            ) from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{p}: not valid JSON ({e})", hint="fix or remove that file") from e
        return spec_from_dict(data, str(p))

    def all(self) -> list[NetworkSpec]:
        return [self.load(n) for n in self.names()]

    def save(self, spec: NetworkSpec) -> None:
        write_atomic(self.path(spec.name), spec.model_dump_json(indent=2, exclude_defaults=False) + "\n")

    def delete(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)
