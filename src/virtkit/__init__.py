"""virtkit: a virtualization platform for Linux hosts."""

from virtkit.errors import (
    AgentError,
    ConfigError,
    EngineError,
    GuestTimeout,
    HostError,
    ImageError,
    VirtkitError,
)

__version__ = "0.1.0"

__all__ = [
    "AgentError",
    "ConfigError",
    "EngineError",
    "GuestTimeout",
    "HostError",
    "ImageError",
    "VirtkitError",
    "__version__",
]
