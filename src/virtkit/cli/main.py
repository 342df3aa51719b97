"""``virtkit``: the command line.

Exit codes scripts can rely on: the guest command's own exit code for ``run``; 0 success; 125 a virtkit
error (bad input, host problem, engine failure: like ``docker run``); 124 the guest never became ready;
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from virtkit import __version__
from virtkit.config import defaults
from virtkit.errors import GuestTimeout, VirtkitError

EXIT_ERROR = 125
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="virtkit",
    help="Run and manage virtual machines: QEMU (KVM or TCG) and virtkit's own KVM VMM.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)

DEFAULT_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("uname", "-a"),
    ("sh", "-c", "grep -m1 'model name' /proc/cpuinfo"),
    ("free", "-m"),
)


def _fail(exc: VirtkitError) -> typer.Exit:
    err.print(f"[bold red]virtkit: error:[/] {exc.message}", highlight=False, markup=True)
    if exc.hint:
        err.print(f"  fix: {exc.hint}", highlight=False, markup=False)
    if isinstance(exc, GuestTimeout):
        if exc.console_tail:
            err.print("  last console lines:", highlight=False)
            for line in exc.console_tail.splitlines():
                err.print(f"    {line}", highlight=False, markup=False)
        return typer.Exit(EXIT_TIMEOUT)
    return typer.Exit(EXIT_ERROR)


@app.command()
def version() -> None:
    """Print virtkit's version."""
    out.print(__version__)


@app.command()
def host(json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Which virtualization techniques this host offers, and why (like virt-host-validate)."""
    from virtkit.engines.qemu import QemuEngine
    from virtkit.engines.select import native_engine
    from virtkit.host.probe import probe

    report = probe()
    engines = {"qemu": QemuEngine(report=report).availability()}
    native = native_engine(report)
    if native is not None:
        engines["native"] = native.availability()
    if json_out:
        out.print_json(
            json.dumps(
                {
                    "cpu": report.cpu_model,
                    "kvm_api": report.kvm_api,
                    "kvm_modules": sorted(report.kvm_modules),
                    "qemu": report.qemu_version,
                    "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in report.checks],
                    "engines": {
                        n: {"usable": a.usable, "technique": a.technique and a.technique.value, "reason": a.reason}
                        for n, a in engines.items()
                    },
                }
            )
        )
        return
    out.print(f"CPU: {report.cpu_model}")
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("technique")
    table.add_column("")
    table.add_column("why")
    for c in report.checks:
        table.add_row(c.name, "[green]PASS[/]" if c.ok else "[yellow]NO[/]", c.detail)
    out.print(table)
    et = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    et.add_column("engine")
    et.add_column("usable")
    et.add_column("technique")
    et.add_column("why")
    for n, a in engines.items():
        et.add_row(n, "yes" if a.usable else "no", a.technique.value if a.technique else "-", a.reason)
    out.print(et)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    ctx: typer.Context,
    image: Annotated[str, typer.Option(help="Guest image to boot.")] = defaults.DEFAULT_IMAGE,
    engine: Annotated[str, typer.Option(help="auto, qemu or native.")] = "auto",
    kernel: Annotated[Path | None, typer.Option(help="Boot this kernel instead of the image's.")] = None,
    initrd: Annotated[Path | None, typer.Option(help="Initrd to go with --kernel.")] = None,
    cmdline: Annotated[str, typer.Option(help="Kernel command line.")] = defaults.DEFAULT_CMDLINE,
    memory: Annotated[int, typer.Option(help="Guest memory in MiB.")] = defaults.DEFAULT_MEMORY_MIB,
    vcpus: Annotated[int, typer.Option(help="Number of vCPUs.")] = defaults.DEFAULT_VCPUS,
    disk: Annotated[list[Path] | None, typer.Option(help="Attach a disk (raw or qcow2), repeatable.")] = None,
    network: Annotated[
        list[str] | None,
        typer.Option(
            help="none | user (QEMU user-mode NAT) | default | NAME | bridge=BR | direct=IFACE[,mode=M]; repeatable."
        ),
    ] = None,
    publish: Annotated[
        list[str] | None, typer.Option(help="HOSTPORT:GUESTPORT[/tcp|udp] on the first NIC's NAT network.")
    ] = None,
    no_paravirt: Annotated[bool, typer.Option("--no-paravirt", help="Hide KVM's paravirtual CPUID leaves.")] = False,
    keep: Annotated[bool, typer.Option(help="Leave the guest running and attach its console.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the guest agent.")] = defaults.READY_TIMEOUT_S,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Boot a guest, run a command in it (default: uname, CPU model, free), print the output, power off.

    `virtkit run -- CMD ...` runs CMD instead; the guest's exit code becomes virtkit's.
    """
    from virtkit.cli import runcmd

    if engine == "native" and kernel is not None and initrd is None and not ctx.args:
        # A bare kernel (no initrd, so no agent): its serial console on this terminal until it powers off.
        from virtkit.cli.native import run_native

        try:
            raise typer.Exit(run_native(kernel, initrd, cmdline, memory, paravirt=not no_paravirt))
        except VirtkitError as exc:
            raise _fail(exc) from None
    try:
        code = runcmd.run(
            commands=[tuple(ctx.args)] if ctx.args else list(DEFAULT_COMMANDS),
            image=image,
            engine=engine,
            kernel=kernel,
            initrd=initrd,
            cmdline=cmdline,
            memory=memory,
            vcpus=vcpus,
            disks=disk or [],
            networks=network or ["none"],
            publish=publish or [],
            paravirt=not no_paravirt,
            keep=keep,
            timeout=timeout,
            json_out=json_out,
            out=out,
            err=err,
        )
    except VirtkitError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        err.print("virtkit: interrupted; the guest was stopped")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    raise typer.Exit(code)


def _register_subapps() -> None:
    """Sub-command groups that live in their own modules."""
    try:
        from virtkit.cli.image import app as image_app
    except ImportError:
        return
    app.add_typer(image_app, name="image", help="Build and list guest images.")
    # VM verbs go through virtkitd (started on demand); networks are managed in-process (they live in the
    # kernel and in files, so every process sees the same state) and work without the daemon too.
    from virtkit.cli.net import COMMANDS as NET_COMMANDS
    from virtkit.cli.vm import register as register_vm

    register_vm(app, exclude=tuple(n for n in NET_COMMANDS if n.startswith("net-")))
    taken = {c.name for c in app.registered_commands}
    for name, fn in NET_COMMANDS.items():
        if name not in taken:
            app.command(name, hidden=name == "net-destroy")(fn)


_register_subapps()


def main() -> None:
    try:
        app()
    except VirtkitError as exc:
        code = _fail(exc).exit_code
        sys.exit(code)


if __name__ == "__main__":
    main()
