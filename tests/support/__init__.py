"""Test and benchmark harnesses that need real parts (kernels from Debian, QEMU); not used by the product."""
