"""Disks: inspection, creation and checking through qemu-img."""

from virtkit.storage.disks import DiskInfo, create_disk, inspect_disk

__all__ = ["DiskInfo", "create_disk", "inspect_disk"]
