"""Client for the QEMU guest agent protocol (JSON over a virtio-serial port)."""

from virtkit.agent.client import AgentClient, ExecResult

__all__ = ["AgentClient", "ExecResult"]
