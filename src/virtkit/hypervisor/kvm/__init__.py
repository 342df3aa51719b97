"""KVM through ctypes and ioctls: one wrapper per file descriptor (system, vm, vcpu)."""

from virtkit.hypervisor.kvm.system import Kvm

__all__ = ["Kvm"]
