"""virtio: split virtqueues (queue.py, no device knowledge), the device interface (device.py), the PCI
transport (pci.py) and one file per device (rng.py, ...)."""
