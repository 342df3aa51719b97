"""An 8250/16550A UART: transmit to a writer, receive from the host, interrupts through a Trigger.

Interrupt rules follow QEMU's hw/char/serial.c (which Linux's 8250 driver is happy with): the line is high
while any enabled interrupt is pending, priority receive-line-status > data-ready > transmit-empty > modem;
reading IIR while it shows transmit-empty clears that one, and so does writing THR (transmission is instant,
so the transmit-empty interrupt is raised again right after).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from virtkit.devices.trigger import Trigger

# register offsets
RBR_THR_DLL = 0
IER_DLM = 1
IIR_FCR = 2
LCR = 3
MCR = 4
LSR = 5
MSR = 6
SCR = 7

IER_RDI = 0x01
IER_THRI = 0x02
IER_RLSI = 0x04
IER_MSI = 0x08

IIR_NO_INT = 0x01
IIR_MSI = 0x00
IIR_THRI = 0x02
IIR_RDI = 0x04
IIR_RLSI = 0x06
IIR_FIFO_ENABLED = 0xC0

LCR_DLAB = 0x80
MCR_LOOP = 0x10
LSR_DR = 0x01
LSR_OE = 0x02
LSR_BI = 0x10
LSR_THRE = 0x20
LSR_TEMT = 0x40
LSR_ERRORS = 0x1E
MSR_CTS, MSR_DSR, MSR_RI, MSR_DCD = 0x10, 0x20, 0x40, 0x80
MSR_DELTAS = 0x0F
FCR_ENABLE, FCR_CLEAR_RX, FCR_CLEAR_TX = 0x01, 0x02, 0x04

RX_FIFO_SIZE = 64
PORT_COM1 = 0x3F8
IRQ_COM1 = 4


class Serial:
    def __init__(self, trigger: Trigger, out: Callable[[bytes], None]) -> None:
        self._trigger = trigger
        self._out = out
        self._lock = threading.Lock()
        self._rx: deque[int] = deque()
        self.ier = 0
        self.iir = IIR_NO_INT
        self.lcr = 0x03  # 8N1
        self.mcr = 0x08  # OUT2
        self.lsr = LSR_THRE | LSR_TEMT
        self.msr = MSR_DCD | MSR_DSR | MSR_CTS
        self.scr = 0
        self.dll, self.dlm = 0x0C, 0x00  # 9600 baud
        self.fcr = 0
        self.thr_ipending = False
        self.level = False

    # --- host side --------------------------------------------------------------------------------------

    def enqueue(self, data: bytes) -> int:
        """Offer received bytes to the guest; returns how many fit in the receive FIFO."""
        with self._lock:
            room = RX_FIFO_SIZE - len(self._rx)
            taken = data[:room]
            if self.mcr & MCR_LOOP:
                return len(taken)  # in loopback the line is disconnected from the outside
            self._rx.extend(taken)
            if self._rx:
                self.lsr |= LSR_DR
            self._update()
            return len(taken)

    def rx_room(self) -> int:
        with self._lock:
            return RX_FIFO_SIZE - len(self._rx)

    # --- guest side ---------------------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> bytes:
        with self._lock:
            value = self._read(offset & 7)
            self._update()
        return bytes([value]) + b"\x00" * (size - 1)

    def write(self, offset: int, data: bytes) -> None:
        if not data:
            return
        with self._lock:
            self._write(offset & 7, data[0])
            self._update()

    def _read(self, reg: int) -> int:
        dlab = self.lcr & LCR_DLAB
        if reg == RBR_THR_DLL:
            if dlab:
                return self.dll
            value = self._rx.popleft() if self._rx else 0
            if not self._rx:
                self.lsr &= ~LSR_DR
            return value
        if reg == IER_DLM:
            return self.dlm if dlab else self.ier
        if reg == IIR_FCR:
            value = self.iir
            if (value & 0x0F) == IIR_THRI:
                self.thr_ipending = False
            return value
        if reg == LCR:
            return self.lcr
        if reg == MCR:
            return self.mcr
        if reg == LSR:
            value = self.lsr
            self.lsr &= ~(LSR_OE | LSR_BI)  # error bits clear on read
            return value
        if reg == MSR:
            if self.mcr & MCR_LOOP:
                # loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD
                m = self.mcr
                return ((m & 0x01) << 5) | ((m & 0x02) << 3) | ((m & 0x04) << 4) | ((m & 0x08) << 4)
            value = self.msr
            self.msr &= ~MSR_DELTAS
            return value
        return self.scr

    def _write(self, reg: int, value: int) -> None:
        dlab = self.lcr & LCR_DLAB
        if reg == RBR_THR_DLL:
            if dlab:
                self.dll = value
                return
            self.thr_ipending = False
            if self.mcr & MCR_LOOP:
                if len(self._rx) < RX_FIFO_SIZE:
                    self._rx.append(value)
                    self.lsr |= LSR_DR
                else:
                    self.lsr |= LSR_OE
            else:
                self._out(bytes([value]))
            # transmission is instant: the holding register is empty again
            self.lsr |= LSR_THRE | LSR_TEMT
            self.thr_ipending = True
        elif reg == IER_DLM:
            if dlab:
                self.dlm = value
                return
            old = self.ier
            self.ier = value & 0x0F
            if (self.ier & IER_THRI) and not (old & IER_THRI) and (self.lsr & LSR_THRE):
                self.thr_ipending = True
        elif reg == IIR_FCR:
            if value & FCR_CLEAR_RX:
                self._rx.clear()
                self.lsr &= ~LSR_DR
            self.fcr = value & 0xC9
            self.iir = (self.iir & 0x0F) | (IIR_FIFO_ENABLED if value & FCR_ENABLE else 0)
        elif reg == LCR:
            self.lcr = value
        elif reg == MCR:
            self.mcr = value & 0x1F
        elif reg in (LSR, MSR):
            pass  # read-only
        else:
            self.scr = value

    def _update(self) -> None:
        if (self.ier & IER_RLSI) and (self.lsr & LSR_ERRORS):
            ident = IIR_RLSI
        elif (self.ier & IER_RDI) and (self.lsr & LSR_DR):
            ident = IIR_RDI
        elif (self.ier & IER_THRI) and self.thr_ipending:
            ident = IIR_THRI
        elif (self.ier & IER_MSI) and (self.msr & MSR_DELTAS):
            ident = IIR_MSI
        else:
            ident = IIR_NO_INT
        self.iir = (self.iir & 0xF0) | ident
        level = ident != IIR_NO_INT
        if level != self.level:
            self.level = level
            self._trigger.set_level(level)
