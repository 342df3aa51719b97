"""Domains: the lifecycle state machine (which action is allowed from which state).

The spec a user writes lives in :mod:`virtkit.spec.domain`; its names are re-exported here for the daemon's
modules.
"""

from __future__ import annotations

import enum

from virtkit.engines.base import VmState
from virtkit.errors import ConfigError
from virtkit.spec.domain import (
    DEFAULT_MEMORY_OVERHEAD_MIB,
    MAX_SPEC_BYTES,
    DiskSpec,
    DomainBoot,
    DomainSpec,
    LimitsSpec,
    NetSpec,
    format_validation_error,
    load_spec_file,
    parse_mapping,
    parse_mib,
    parse_spec_text,
    read_mapping,
    validate_spec,
)

__all__ = [
    "ALLOWED",
    "DEFAULT_MEMORY_OVERHEAD_MIB",
    "MAX_SPEC_BYTES",
    "TARGET",
    "Action",
    "DiskSpec",
    "DomainBoot",
    "DomainSpec",
    "DomainState",
    "LimitsSpec",
    "NetSpec",
    "TransitionError",
    "check_transition",
    "format_validation_error",
    "load_spec_file",
    "parse_mapping",
    "parse_mib",
    "parse_spec_text",
    "read_mapping",
    "validate_spec",
]


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
