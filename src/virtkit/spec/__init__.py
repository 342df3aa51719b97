"""What a machine is, from what a user writes to what an engine runs.

- :mod:`virtkit.spec.domain`  the user-facing spec (``DomainSpec``: TOML, YAML, JSON or ``virtkit run`` flags),
  validated by pydantic with field paths in errors;
- :mod:`virtkit.spec.machine` the resolved machine config (``MachineConfig``): frozen dataclasses, pure data,
  what every engine consumes;
- :mod:`virtkit.spec.resolve` the one :func:`~virtkit.spec.resolve.resolve` from the first to the second
  (images, boot and disk paths, NICs, MACs, the guest's kernel command line);
- :mod:`virtkit.spec.codec`   dataclass <-> JSON, for configs that cross a process boundary.

Policy (default sizes, the command line, paths) stays in :mod:`virtkit.config.defaults`.

Nothing is imported here: the engines import only the dataclasses, and the CLI's cold start must not pay for
pydantic (the domain module) unless it parses a spec.
"""
