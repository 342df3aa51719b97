"""Every error virtkit raises on purpose derives from :class:`VirtkitError`.

VirtkitError            a problem with a one-line message and, where there is one, the fix
├── ConfigError         a spec or argument is invalid (names the field)
├── HostError           the host lacks something (a binary, memory, /dev/kvm, a package)
├── ImageError          an image cannot be built or is unknown
├── EngineError         an engine failed to start or control a machine
│   ├── GuestTimeout    the guest never became ready (carries the last console lines)
│   ├── Unsupported     this engine's machines lack an optional capability (the hint says what to do instead)
│   └── IpcError        a control socket's peer broke the protocol or sent an oversize line
│       ├── PeerGone    nothing listens on the socket, or the peer closed it before answering
│       └── IpcTimeout  the peer did not answer in time
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


class Unsupported(EngineError):
    """An optional machine capability (snapshots, console input, hotplug, ...) this engine does not have."""


class IpcError(EngineError):
    """A control socket's peer broke the protocol (not JSON, an oversize line, a reply to another request)."""


class PeerGone(IpcError):
    """Nothing listens on the control socket, or the peer closed the connection before answering."""


class IpcTimeout(IpcError):
    """The peer on a control socket did not answer in time."""
