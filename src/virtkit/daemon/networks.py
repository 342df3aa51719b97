"""What the daemon asks of the host's network layer, as a typed seam.

:class:`virtkit.network.manager.NetworkManager` implements it; unit tests pass a recorder. A daemon started
with ``--no-networks`` has none, and its domains may only use 'user' NICs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from virtkit.network.manager import IfAddr
    from virtkit.spec.machine import NicConfig


class NetworkAttacher(Protocol):
    def adopt(self) -> Sequence[object]:
        """Repair the networks that should be running (at daemon start)."""
        ...

    def autostart_all(self) -> Sequence[str]:
        """Start the networks marked autostart."""
        ...

    def attach_nic(self, vm: str, index: int, network_arg: str, /) -> NicConfig:
        """Create NIC ``index`` of ``vm`` on a network (a name, ``bridge=BR`` or ``direct=IF``)."""
        ...

    def detach_nic(self, vm: str, index: int, /) -> None:
        """Remove what :meth:`attach_nic` created (idempotent)."""
        ...

    def domifaddr(self, vm: str, agent_interfaces: Sequence[dict[str, Any]] | None = None, /) -> Sequence[IfAddr]:
        """The VM's NIC addresses from leases, reservations, the agent's answer and the ARP table."""
        ...
