"""Every error virtkit raises on purpose derives from :class:`VirtkitError`.

VirtkitError            a problem with a one-line message and, where there is one, the fix
├── ConfigError         a spec or argument is invalid (names the field)
├── HostError           the host lacks something (a binary, memory, /dev/kvm, a package)
├── ImageError          an image cannot be built or is unknown
├── EngineError         an engine failed to start or control a machine
│   └── GuestTimeout    the guest never became ready (carries the last console lines)
└── AgentError          the guest agent answered with an error or not at all
"""

from __future__ import annotations


class VirtkitError(Exception):
    """A failure with a message for people and an optional hint that says how to fix it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (fix: {self.hint})" if self.hint else self.message


class ConfigError(VirtkitError):
    pass


class HostError(VirtkitError):
    pass


class ImageError(VirtkitError):
    pass


class EngineError(VirtkitError):
    pass


class GuestTimeout(EngineError):
    def __init__(self, message: str, console_tail: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.console_tail = console_tail


class AgentError(VirtkitError):
    pass
