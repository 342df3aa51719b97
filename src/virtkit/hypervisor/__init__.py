"""The hypervisor seam: protocols in :mod:`base`, KVM through ctypes in :mod:`kvm`, a scripted fake in :mod:`fake`."""
