"""The MSI-X table and pending-bit array of one PCI function (PCI Local Bus 3.0 section 6.8.2), apart from
any virtio detail, as Cloud Hypervisor keeps ``pci/src/msix.rs``.

The guest programs the table through the BAR; the function's enable and mask bits live in the capability's
message control word in config space, which the owner reads through ``control``. A masked vector's message is
held as a pending bit and goes out when the vector or the function is unmasked.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

CAP_ID = 0x11
ENTRY_SIZE = 16  # message address (8), message data (4), vector control (4)
VECTOR_CONTROL = 12  # offset of the vector control word inside an entry
VECTOR_MASKED = 1
CONTROL_ENABLE = 0x8000
CONTROL_FUNCTION_MASK = 0x4000
# what the guest may change in the capability: the message control word's enable and function-mask bits
CAP_WRITABLE = struct.pack("<H", CONTROL_ENABLE | CONTROL_FUNCTION_MASK) + bytes(8)
PBA_LENGTH = 8  # one qword of pending bits covers 64 vectors

MsiSender = Callable[[int, int], None]  # (address, data)


class MsixTable:
    def __init__(self, vectors: int, send: MsiSender, control: Callable[[], int]) -> None:
        if not 0 < vectors <= 64:
            raise ValueError(f"{vectors} MSI-X vectors: this table holds 1 to 64")
        self.vectors = vectors
        self.send = send
        self._control = control
        self.table = bytearray(ENTRY_SIZE * vectors)
        for v in range(vectors):
            self.table[ENTRY_SIZE * v + VECTOR_CONTROL] = VECTOR_MASKED  # masked at reset
        self.pending = [False] * vectors

    def capability(self, table_offset: int, pba_offset: int) -> bytes:
        """The capability body after its id and next pointer: message control, table and PBA (BAR 0)."""
        return struct.pack("<HII", self.vectors - 1, table_offset, pba_offset)

    @property
    def enabled(self) -> bool:
        return bool(self._control() & CONTROL_ENABLE)

    def _masked(self, vector: int) -> bool:
        return bool(self._control() & CONTROL_FUNCTION_MASK or self.table[ENTRY_SIZE * vector + VECTOR_CONTROL] & 1)

    def signal(self, vector: int) -> None:
        """Send ``vector``'s message, or hold it as pending while masked. Out-of-range vectors (NO_VECTOR
        among them) mean the driver asked for no interrupt."""
        if vector >= self.vectors:
            return
        if self._masked(vector):
            self.pending[vector] = True
            return
        self.pending[vector] = False
        address, data = struct.unpack_from("<QI", self.table, ENTRY_SIZE * vector)
        self.send(address, data)

    def deliver_pending(self) -> None:
        for vector, pending in enumerate(self.pending):
            if pending:
                self.signal(vector)

    # --- BAR accesses ------------------------------------------------------------------------------------

    def read_table(self, offset: int, size: int) -> bytes:
        return bytes(self.table[offset : offset + size]).ljust(size, b"\0")

    def write_table(self, offset: int, data: bytes) -> None:
        n = min(len(data), len(self.table) - offset)
        self.table[offset : offset + n] = data[:n]
        self.deliver_pending()  # the write may have unmasked a vector

    def read_pba(self, offset: int, size: int) -> bytes:
        bits = sum(1 << v for v, p in enumerate(self.pending) if p)
        return bits.to_bytes(PBA_LENGTH, "little")[offset:][:size].ljust(size, b"\0")
