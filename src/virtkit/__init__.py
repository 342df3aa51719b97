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


def __getattr__(name: str) -> object:
    # The client pulls in httpx and pydantic models: load it only when asked for.
    if name == "Client":
        from virtkit.client import Client

        return Client
    raise AttributeError(f"module 'virtkit' has no attribute {name!r}")


__all__ = [
    "AgentError",
    "Client",
    "ConfigError",
    "EngineError",
    "GuestTimeout",
    "HostError",
    "ImageError",
    "VirtkitError",
    "__version__",
]
