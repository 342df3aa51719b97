"""PCI: configuration space (config.py), the root bus with its host bridge, configuration mechanism #1 at
ports 0xCF8/0xCFC and the MMIO window where BARs live (root.py)."""
