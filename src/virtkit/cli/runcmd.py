"""``virtkit run``: the main job, from image to output to power-off."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from virtkit.agent.client import ExecResult
from virtkit.cli import output
from virtkit.config.machine import DiskSpec, NicSpec
from virtkit.engines.select import pick_engine
from virtkit.errors import ConfigError
from virtkit.host.probe import probe
from virtkit.oneshot import oneshot, spec_for
from virtkit.storage.disks import inspect_disk


def build_image_with_progress(name: str, err: Console) -> Any:
    """Build (or reuse) an image, showing a progress bar on stderr while real work happens."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from virtkit.images import build_image

    progress = Progress(
        TextColumn("[bold]image {task.fields[image]}[/]"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    task = progress.add_task("checking cache", total=1.0, image=name)

    def report(stage: str, fraction: float) -> None:
        if not progress.live.is_started:
            progress.start()
        progress.update(task, description=stage, completed=fraction)

    try:
        return build_image(name, progress=report)
    finally:
        progress.stop()


@contextlib.contextmanager
def _nics(vm: str, networks: Sequence[str], publish: Sequence[str], err: Console) -> Iterator[tuple[NicSpec, ...]]:
    """NICs for ``vm``: QEMU user-mode (``user``) or virtkit networks; plugged-in TAPs go when the block ends."""
    from virtkit.network.args import parse_network_arg, parse_publish

    pubs = [parse_publish(p) for p in publish]
    wanted = [n for n in networks if n != "none"]
    if pubs and not wanted:
        raise ConfigError("--publish needs a network", hint="add --network default (or --network user)")
    nics: list[NicSpec] = []
    manager = None
    try:
        for i, net in enumerate(wanted):
            first = pubs if i == 0 else []
            if net == "user":
                fwd = tuple((p.proto, p.host_port, p.guest_port) for p in first)
                nics.append(NicSpec(kind="user", forwards=fwd))
                continue
            arg = parse_network_arg(net)
            if arg.note:
                err.print(f"note: {arg.note}", highlight=False)
            if manager is None:
                from virtkit.network.manager import NetworkManager

                manager = NetworkManager()
            nics.append(manager.attach_nic(vm, i, arg, first))
        yield tuple(nics)
    finally:
        if manager is not None:
            manager.detach_vm(vm)


def _disks(paths: Sequence[Path]) -> tuple[DiskSpec, ...]:
    specs = []
    for p in paths:
        info = inspect_disk(p.resolve())
        specs.append(DiskSpec(path=p.resolve(), format="qcow2" if info.format == "qcow2" else "raw"))
    return tuple(specs)


def run(
    *,
    commands: Sequence[tuple[str, ...]],
    image: str,
    engine: str,
    kernel: Path | None,
    initrd: Path | None,
    cmdline: str,
    memory: int,
    vcpus: int,
    disks: Sequence[Path],
    networks: Sequence[str],
    publish: Sequence[str],
    paravirt: bool,
    keep: bool,
    timeout: float,
    json_out: bool,
    out: Console,
    err: Console,
) -> int:
    report = probe()
    eng = pick_engine(engine, report)
    avail = eng.availability()
    if not avail.usable:
        raise ConfigError(f"the {eng.name} engine cannot run here: {avail.reason}", hint="try --engine qemu")
    kernel_version: str | None = None
    if kernel is not None:
        if initrd is None:
            raise ConfigError("--kernel needs --initrd here", hint="give --initrd PATH (the agent lives in it)")
        kernel_path, initrd_path = kernel.resolve(), initrd.resolve()
    else:
        img = build_image_with_progress(image, err)
        kernel_path, initrd_path, kernel_version = img.kernel, img.initrd, img.kernel_version
    name = f"run-{secrets.token_hex(3)}"
    technique = avail.technique.value if avail.technique else "?"
    results: list[tuple[tuple[str, ...], ExecResult]] = []
    with contextlib.ExitStack() as nic_stack:
        nic_specs = nic_stack.enter_context(_nics(name, networks, publish, err))
        spec = spec_for(
            kernel_path,
            initrd_path,
            name=name,
            cmdline=cmdline,
            memory_mib=memory,
            vcpus=vcpus,
            disks=_disks(disks),
            nics=nic_specs,
            paravirt=paravirt,
        )
        with contextlib.ExitStack() as stack:
            status = err.status(f"booting {spec.name} on {eng.name}: {technique}")
            status.start()
            try:
                shot = stack.enter_context(oneshot(eng, spec, ready_timeout=timeout, keep=keep))
            finally:
                status.stop()
            agent = shot.machine.agent()
            for argv in commands:
                results.append((argv, agent.exec(argv, timeout=None)))
            summary = {
                "name": spec.name,
                "engine": eng.name,
                "technique": shot.machine.technique.value,
                "boot_seconds": round(shot.boot_seconds, 3),
                "kernel": str(kernel_path),
                "kernel_version": kernel_version,
            }
            _print(results, summary, default=len(commands) > 1 or commands == [], json_out=json_out, out=out, err=err)
            if keep:
                _keep(shot.machine, err)
        if keep:
            nic_stack.pop_all()  # the machine keeps running, and keeps its TAPs
    return next((r.exitcode for _, r in results if r.exitcode != 0), 0)


def _print(
    results: Sequence[tuple[tuple[str, ...], ExecResult]],
    summary: dict[str, Any],
    *,
    default: bool,
    json_out: bool,
    out: Console,
    err: Console,
) -> None:
    if json_out:
        doc = {
            **summary,
            "results": [
                {
                    "argv": list(argv),
                    "exitcode": r.exitcode,
                    "stdout": r.stdout.decode(errors="replace"),
                    "stderr": r.stderr.decode(errors="replace"),
                    "stdout_b64": base64.b64encode(r.stdout).decode(),
                }
                for argv, r in results
            ],
        }
        output.print_json(doc)
        return
    for argv, r in results:
        if default:
            shown = argv[2] if argv[:2] == ("sh", "-c") else " ".join(argv)
            sys.stdout.write(f"$ {shown}\n")
        sys.stdout.flush()
        sys.stdout.buffer.write(r.stdout)
        sys.stdout.buffer.flush()
        sys.stderr.buffer.write(r.stderr)
        sys.stderr.buffer.flush()
    line = (
        f"engine: {summary['engine']}  technique: {summary['technique']}  "
        f"boot to agent-ready: {summary['boot_seconds']:.2f} s"
    )
    if default:  # the summary belongs with the default commands' output; after the user's own, on stderr
        output.line(line)
    else:
        output.note(line)


def _keep(machine: Any, err: Console) -> None:
    sock = getattr(machine, "console_socket", None)
    output.note(
        f"virtkit: {machine.name} keeps running (engine {machine.engine}, pid {machine.pid}); "
        f"run files in {getattr(machine, 'workdir', '?')}"
    )
    if sock is not None and os.isatty(sys.stdin.fileno()):
        from virtkit.cli.console import attach

        attach(sock)
