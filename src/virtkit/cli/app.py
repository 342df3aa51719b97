"""``virtkit``'s command tree (typer). :mod:`virtkit.cli.main` is the entry point that runs it.

One tree: ``run`` and ``host`` work in this process (here); the domain verbs (:mod:`virtkit.cli.vm`)
and the network verbs (:mod:`virtkit.cli.net`) go through virtkitd; ``image`` (:mod:`virtkit.cli.image`)
works on the local image cache. Everything is printed by :mod:`virtkit.cli.output`, which also holds the one
exit-code table. Modules here import only typer and the standard library at the top; pydantic, rich, the engines
and the network layer are loaded by the commands that use them (tests/unit/cli/test_imports.py keeps it so).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from virtkit import __version__
from virtkit.cli import image, net, output, vm
from virtkit.config import defaults

app = typer.Typer(
    name="virtkit",
    help="Run and manage virtual machines: QEMU (KVM or TCG) and virtkit's own KVM VMM.",
    epilog=output.EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

DEFAULT_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("uname", "-a"),
    ("sh", "-c", "grep -m1 'model name' /proc/cpuinfo"),
    ("free", "-m"),
)


def _version(value: bool) -> None:
    if value:
        output.line(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print virtkit's version and exit.")
    ] = False,
) -> None:
    """Run and manage virtual machines: QEMU (KVM or TCG) and virtkit's own KVM VMM."""


@app.command()
def version() -> None:
    """Print virtkit's version."""
    output.line(__version__)


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
        output.print_json(
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
        return
    output.line(f"CPU: {report.cpu_model}")
    output.table(["technique", "", "why"], [[c.name, "PASS" if c.ok else "NO", c.detail] for c in report.checks])
    output.table(
        ["engine", "usable", "technique", "why"],
        [
            [n, "yes" if a.usable else "no", a.technique.value if a.technique else None, a.reason]
            for n, a in engines.items()
        ],
    )


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
    disk: Annotated[
        list[Path] | None, typer.Option(metavar="PATH", help="Attach a disk (raw or qcow2), repeatable.")
    ] = None,
    network: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NET",
            help="none | user (QEMU user-mode NAT) | default | NAME | bridge=BR | direct=IFACE[,mode=M]; repeatable.",
        ),
    ] = None,
    publish: Annotated[
        list[str] | None,
        typer.Option(metavar="PORTS", help="HOSTPORT:GUESTPORT[/tcp|udp] on the first NIC's NAT network."),
    ] = None,
    no_paravirt: Annotated[bool, typer.Option("--no-paravirt", help="Hide KVM's paravirtual CPUID leaves.")] = False,
    keep: Annotated[bool, typer.Option(help="Leave the guest running and attach its console.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the guest agent.")] = defaults.READY_TIMEOUT_S,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Boot a guest, run a command in it (default: uname, CPU model, free), print the output, power off.

    `virtkit run -- CMD ...` runs CMD instead; the guest's exit code becomes virtkit's.
    """
    if engine == "native" and kernel is not None and initrd is None and not ctx.args:
        # A bare kernel (no initrd, so no agent): its serial console on this terminal until it powers off.
        from virtkit.cli.native import run_native

        with output.reported(output.docker_code):
            code = run_native(kernel, initrd, cmdline, memory, paravirt=not no_paravirt)
        raise typer.Exit(code)
    from virtkit.cli import runcmd

    out, err = output.consoles()
    try:
        with output.reported(output.docker_code):
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
    except SystemExit as e:
        if e.code == output.EXIT_INTERRUPTED:
            output.note("virtkit: the guest was stopped")
        raise
    raise typer.Exit(code)


app.add_typer(image.app, name="image", help="Build and list guest images.")
vm.register(app)
net.register(app)
