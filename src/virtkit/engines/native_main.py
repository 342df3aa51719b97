"""The native VMM process: one machine per process.

    python -m virtkit.engines.native_main --kernel K [--initrd I] [--cmdline C] [--memory-mib M]
        [--no-paravirt] [--on-reset restart|exit] [--console stdio|none] [--console-log FILE]
        [--control SOCKET] [--console-socket SOCKET] [--stdin] [--stats-json FILE]

Exit status: 0 when the guest powered off, reset with ``--on-reset exit``, or the VMM was stopped; 1 when
the guest crashed or KVM failed; 2 for bad input (the message says what to fix).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from virtkit.errors import VirtkitError
from virtkit.hypervisor.kvm import Kvm
from virtkit.machine.config import VmmConfig
from virtkit.machine.console import ConsoleSink, StreamWriter
from virtkit.machine.runner import Runner

if TYPE_CHECKING:
    from virtkit.machine.control import UnixServer

EXIT_OK, EXIT_CRASHED, EXIT_BAD_INPUT = 0, 1, 2
CTRL_A = 0x01


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="virtkit-native", description="virtkit's native KVM VMM (one VM)")
    p.add_argument("--kernel", type=Path, required=True, help="bzImage, or an ELF vmlinux with a PVH note")
    p.add_argument("--initrd", type=Path)
    p.add_argument("--cmdline", default="console=ttyS0")
    p.add_argument("--memory-mib", type=int, default=256)
    p.add_argument("--vcpus", type=int, default=1)
    p.add_argument("--no-paravirt", action="store_true", help="hide KVM's paravirtual CPUID leaves")
    p.add_argument("--no-acpi", action="store_true", help="no ACPI tables (the guest cannot power off)")
    p.add_argument("--on-reset", choices=("restart", "exit"), default="restart")
    p.add_argument("--console", choices=("stdio", "none"), default="stdio")
    p.add_argument("--console-log", type=Path)
    p.add_argument("--control", type=Path, help="unix socket for JSON-lines control")
    p.add_argument("--console-socket", type=Path, help="unix socket to attach to the serial console")
    p.add_argument("--stdin", action="store_true", help="feed stdin to the serial port (Ctrl-A X quits)")
    p.add_argument("--agent-socket", type=Path, help="unix socket bridged to the guest agent's virtio port")
    p.add_argument("--no-rng", action="store_true", help="no virtio-rng device")
    p.add_argument("--stats-json", type=Path, help="write exit statistics here when the VMM ends")
    return p.parse_args(argv)


def config_from(args: argparse.Namespace) -> VmmConfig:
    return VmmConfig(
        kernel=args.kernel,
        initrd=args.initrd,
        cmdline=args.cmdline,
        memory_mib=args.memory_mib,
        vcpus=args.vcpus,
        paravirt=not args.no_paravirt,
        on_reset=args.on_reset,
        acpi=not args.no_acpi,
        virtio_rng=not args.no_rng,
        agent_socket=args.agent_socket,
    )


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


def bad_input(args: argparse.Namespace, error: VirtkitError) -> int:
    """Say what is wrong: to people on stderr, and to the engine as a typed error in the end report."""
    print(f"virtkit-native: {error}", file=sys.stderr)
    if args.stats_json:
        import json

        from virtkit.ipc import encode_error

        with contextlib.suppress(OSError):
            args.stats_json.write_text(json.dumps({"error": encode_error(error)}))
    return EXIT_BAD_INPUT


def run(args: argparse.Namespace, on_runner: Callable[[Runner], None] | None = None) -> int:
    """Run the VMM in this process (the main thread must call it); returns the exit status."""
    startup = process_age()
    try:
        config = config_from(args)
    except VirtkitError as e:
        return bad_input(args, e)
    console = ConsoleSink(args.console_log)
    stdout = StreamWriter(sys.stdout.fileno()) if args.console == "stdio" else None
    if stdout is not None:
        console.add_listener(stdout)
    runner = Runner(config, Kvm, console)
    servers: list[UnixServer] = []
    previous = {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        runner.stop()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        previous[sig] = signal.signal(sig, on_signal)
    try:
        if args.control or args.console_socket:
            # imported only when asked for: start-up time counts under nested virtualization
            from virtkit.machine.control import ConsoleServer, ControlServer

            if args.control:
                servers.append(ControlServer(args.control, runner))
            if args.console_socket:
                servers.append(ConsoleServer(args.console_socket, runner))
        if args.stdin:
            threading.Thread(target=pump_stdin, args=(runner, sys.stdin.fileno()), name="stdin", daemon=True).start()
        if on_runner is not None:
            on_runner(runner)
        try:
            outcome = runner.run()
        except VirtkitError as e:
            return bad_input(args, e)
        timings = {"python_start": startup, **runner.timings}
        if args.stats_json and runner.last_statistics is not None:
            import json

            args.stats_json.write_text(
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
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
