"""Emulated devices, one per file, on address-range buses; interrupts leave through a ``Trigger``."""
