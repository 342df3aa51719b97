"""Guest physical memory, seen by devices only through read/write/view (never the mmap itself)."""

from virtkit.memory.guest import GuestMemory, GuestMemoryError, Region

__all__ = ["GuestMemory", "GuestMemoryError", "Region"]
