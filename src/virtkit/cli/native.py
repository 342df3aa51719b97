"""``virtkit run --engine native``: boot a kernel on the native VMM with the serial console on this terminal.

The lead's CLI calls :func:`run_native`. Ctrl-A X ends the machine (as in QEMU's -nographic).
"""

from __future__ import annotations

import contextlib
import os
import sys
import termios
from collections.abc import Iterator
from pathlib import Path

from virtkit.engines import native_main
from virtkit.machine.config import VmmConfig


@contextlib.contextmanager
def _terminal_keys(fd: int) -> Iterator[None]:
    """Pass keys through unprocessed (no echo, no line editing, no ^C signal); keep output processing."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    mode = termios.tcgetattr(fd)
    mode[0] &= ~(termios.ICRNL | termios.IXON | termios.INLCR | termios.IGNCR)
    mode[3] &= ~(termios.ICANON | termios.ECHO | termios.ISIG | termios.IEXTEN)
    mode[6][termios.VMIN], mode[6][termios.VTIME] = 1, 0
    termios.tcsetattr(fd, termios.TCSANOW, mode)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)


def run_native(
    kernel: Path,
    initrd: Path | None = None,
    cmdline: str = "console=ttyS0",
    memory_mib: int = 256,
    paravirt: bool = True,
    on_reset: str = "restart",
    console_log: Path | None = None,
) -> int:
    """Boot in this process with the console on the terminal; returns the exit status (0 clean, 1 crashed,
    2 bad input)."""
    process = native_main.VmmProcess(
        vmm=VmmConfig(
            kernel=kernel,
            initrd=initrd,
            cmdline=cmdline,
            memory_mib=memory_mib,
            paravirt=paravirt,
            on_reset="exit" if on_reset == "exit" else "restart",
        ),
        console="stdio",
        console_log=console_log,
        stdin=True,
    )
    fd = sys.stdin.fileno()
    if os.isatty(fd):
        print("virtkit: serial console attached; Ctrl-A X ends the machine", file=sys.stderr)
    with _terminal_keys(fd):
        return native_main.run(process)
