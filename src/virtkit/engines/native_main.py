"""The native VMM process: one machine per process, configured by one JSON document.

    python -m virtkit.engines.native_main CONFIG.json      (or ``-``: read it from stdin; or the document itself)

The document is :class:`VmmProcess` as JSON (:mod:`virtkit.spec.codec`): ``{"vmm": {"kernel": ...,
"cmdline": ..., "memory_mib": ...}, "console": "none", "control": "/run/.../control.sock", ...}``;
:class:`~virtkit.machine.config.VmmConfig` lists the machine's fields. :meth:`virtkit.engines.native.NativeEngine.command` writes it; ``virtkit run
--engine native --kernel K`` builds it in-process (:mod:`virtkit.cli.native`).

Exit status: 0 when the guest powered off, reset with ``on_reset: exit``, or the VMM was stopped; 1 when
the guest crashed or KVM failed; 2 for bad input (the message says what to fix).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

from virtkit.errors import ConfigError, VirtkitError
from virtkit.hypervisor.kvm import Kvm
from virtkit.machine.config import VmmConfig
from virtkit.machine.console import ConsoleSink, StreamWriter
from virtkit.machine.runner import Runner

if TYPE_CHECKING:
    from virtkit.machine.control import UnixServer

EXIT_OK, EXIT_CRASHED, EXIT_BAD_INPUT = 0, 1, 2
CTRL_A = 0x01
USAGE = "usage: python -m virtkit.engines.native_main CONFIG.json | - | '{\"vmm\": {...}}'"


@dataclass(frozen=True)
class VmmProcess:
    """Everything the VMM process is told: the machine, and where its console and control sockets go."""

    vmm: VmmConfig
    # "stdio": the serial console's output on this process's stdout
    console: Literal["stdio", "none"] = "stdio"
    console_log: Path | None = None
    # unix socket for JSON-lines control
    control: Path | None = None
    # unix socket to attach to the serial console
    console_socket: Path | None = None
    # feed stdin to the serial port (Ctrl-A X quits)
    stdin: bool = False
    # write exit statistics here when the VMM ends
    stats_json: Path | None = None

    def to_json(self) -> dict[str, Any]:
        from virtkit.spec.codec import to_json

        data: dict[str, Any] = to_json(self)
        return data

    @classmethod
    def from_json(cls, data: Any) -> VmmProcess:
        from virtkit.spec.codec import from_json

        return from_json(cls, data, "config")


def load_process(arg: str) -> VmmProcess:
    """The document named by the command line's one argument: a file, ``-`` (stdin), or the JSON itself."""
    if arg == "-":
        text = sys.stdin.read()
    elif arg.lstrip().startswith("{"):
        text = arg
    else:
        try:
            text = Path(arg).read_text()
        except OSError as e:
            raise ConfigError(f"cannot read the VMM config {arg}: {e.strerror}", hint=USAGE) from e
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"the VMM config is not JSON: {e}", hint=USAGE) from e
    return VmmProcess.from_json(data)


def pump_stdin(runner: Runner, fd: int) -> None:
    """Feed ``fd`` to the UART; Ctrl-A X stops the machine, Ctrl-A Ctrl-A sends one Ctrl-A."""
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


def process_age() -> float:
    """Seconds since this process started (interpreter start-up and imports included); 0 if unknown."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


def summary(runner: Runner, timings: dict[str, float]) -> str:
    """One line for people: where the time went and which ports the guest kept exiting on."""
    parts = [f"{name.replace('_', ' ')} {seconds:.2f} s" for name, seconds in timings.items()]
    stats = runner.last_statistics
    if stats is not None:
        total = sum(v for k, v in stats.exits.items() if k != "interrupted")
        ports = ", ".join(f"{port:#x}: {n}" for port, n in stats.top_ports[:5])
        parts.append(f"{total} exits" + (f" ({ports})" if ports else ""))
    return "; ".join(parts)


def bad_input(stats_json: Path | None, error: VirtkitError) -> int:
    """Say what is wrong: to people on stderr, and to the engine as a typed error in the end report."""
    print(f"virtkit-native: {error}", file=sys.stderr)
    if stats_json:
        from virtkit.ipc import encode_error

        with contextlib.suppress(OSError):
            stats_json.write_text(json.dumps({"error": encode_error(error)}))
    return EXIT_BAD_INPUT


def run(process: VmmProcess, on_runner: Callable[[Runner], None] | None = None) -> int:
    """Run the VMM in this process (the main thread must call it); returns the exit status."""
    startup = process_age()
    console = ConsoleSink(process.console_log)
    stdout = StreamWriter(sys.stdout.fileno()) if process.console == "stdio" else None
    if stdout is not None:
        console.add_listener(stdout)
    runner = Runner(process.vmm, Kvm, console)
    servers: list[UnixServer] = []
    previous = {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        runner.stop()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        previous[sig] = signal.signal(sig, on_signal)
    try:
        if process.control or process.console_socket:
            # imported only when asked for: start-up time counts under nested virtualization
            from virtkit.machine.control import ConsoleServer, ControlServer

            if process.control:
                servers.append(ControlServer(process.control, runner))
            if process.console_socket:
                servers.append(ConsoleServer(process.console_socket, runner))
        if process.stdin:
            threading.Thread(target=pump_stdin, args=(runner, sys.stdin.fileno()), name="stdin", daemon=True).start()
        if on_runner is not None:
            on_runner(runner)
        try:
            outcome = runner.run()
        except VirtkitError as e:
            return bad_input(process.stats_json, e)
        timings = {"python_start": startup, **runner.timings}
        if process.stats_json and runner.last_statistics is not None:
            process.stats_json.write_text(
                json.dumps(
                    {
                        **asdict(runner.last_statistics),
                        "outcome": asdict(outcome),
                        "boots": runner.boots,
                        "timings_s": timings,
                    }
                )
            )
        if stdout is not None:
            stdout.close()  # the guest's last words before ours
        print(f"virtkit-native: {outcome.kind}: {outcome.reason} ({summary(runner, timings)})", file=sys.stderr)
        return EXIT_CRASHED if outcome.kind == "crashed" else EXIT_OK
    finally:
        for server in servers:
            server.close()
        if stdout is not None:
            stdout.close()
        console.close()
        for sig, handler in previous.items():
            with contextlib.suppress(TypeError, ValueError):
                signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr)
        return EXIT_OK if args in (["-h"], ["--help"]) else EXIT_BAD_INPUT
    try:
        process = load_process(args[0])
    except VirtkitError as e:
        print(f"virtkit-native: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return run(process)


if __name__ == "__main__":
    sys.exit(main())
