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
    argv = ["--kernel", str(kernel), "--cmdline", cmdline, "--memory-mib", str(memory_mib),
            "--on-reset", on_reset, "--console", "stdio"]  # fmt: skip
    if initrd is not None:
        argv += ["--initrd", str(initrd)]
    if not paravirt:
        argv.append("--no-paravirt")
    if console_log is not None:
        argv += ["--console-log", str(console_log)]
    argv.append("--stdin")
    args = native_main.parse_args(argv)
    fd = sys.stdin.fileno()
    if os.isatty(fd):
        print("virtkit: serial console attached; Ctrl-A X ends the machine", file=sys.stderr)
    with _terminal_keys(fd):
        return native_main.run(args)
