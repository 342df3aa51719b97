"""``virtkit run --engine native``: boot a kernel on the native VMM with the serial console on this terminal.

The lead's CLI calls :func:`run_native`. Ctrl-A X ends the machine (as in QEMU's -nographic).
"""

from __future__ import annotations

import contextlib
import os
import sys
import termios
import threading
from collections.abc import Iterator
from pathlib import Path

from virtkit.engines import native_main
from virtkit.machine.runner import Runner

CTRL_A = 0x01


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


def _pump_stdin(runner: Runner, fd: int) -> None:
    escape = False
    while True:
        try:
            data = os.read(fd, 1024)
        except OSError:
            return
        if not data:
            return
        out = bytearray()
        for byte in data:
            if escape:
                escape = False
                if byte in (ord("x"), ord("X")):
                    runner.stop()
                    return
                if byte != CTRL_A:
                    out.append(CTRL_A)
            elif byte == CTRL_A:
                escape = True
                continue
            out.append(byte)
        if out:
            runner.send_input(bytes(out))


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
    args = native_main.parse_args(argv)
    fd = sys.stdin.fileno()

    def attach(runner: Runner) -> None:
        if os.isatty(fd):
            print("virtkit: serial console attached; Ctrl-A X ends the machine", file=sys.stderr)
        threading.Thread(target=_pump_stdin, args=(runner, fd), name="stdin", daemon=True).start()

    with _terminal_keys(fd):
        return native_main.run(args, on_runner=attach)
