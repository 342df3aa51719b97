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

from pydantic import ValidationError
from rich.console import Console

from virtkit.agent.client import ExecResult
from virtkit.cli import output
from virtkit.engines.select import pick_engine
from virtkit.errors import ConfigError
from virtkit.host.probe import probe
from virtkit.oneshot import oneshot
from virtkit.spec.domain import DomainSpec, NetSpec, format_validation_error
from virtkit.spec.machine import NicConfig
from virtkit.spec.resolve import BootImage, NicAttacher, resolve


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


def machine_spec(
    name: str,
    *,
    engine: str,
    image: str,
    kernel: Path | None,
    initrd: Path | None,
    cmdline: str,
    memory: int,
    vcpus: int,
    disks: Sequence[Path],
    networks: Sequence[str],
    publish: Sequence[str],
    paravirt: bool,
) -> DomainSpec:
    """``virtkit run``'s flags as a domain spec: the image (or --kernel/--initrd), ``--disk`` files with their
    format read from the file, ``--network`` values (``user`` or a network argument such as ``default`` or
    ``bridge=BR``) with ``--publish`` on the first NIC."""
    from virtkit.network.args import parse_publish

    if kernel is not None and initrd is None:
        raise ConfigError("--kernel needs --initrd here", hint="give --initrd PATH (the agent lives in it)")
    pubs = [parse_publish(p) for p in publish]
    wanted = [n for n in networks if n != "none"]
    if pubs and not wanted:
        raise ConfigError("--publish needs a network", hint="add --network default (or --network user)")
    nics: list[dict[str, Any]] = []
    for i, net in enumerate(wanted):
        forwards = [(p.proto, p.host_port, p.guest_port) for p in pubs] if i == 0 else []
        nics.append({"kind": "user", "forwards": forwards} if net == "user" else {"network": net, "forwards": forwards})
    data: dict[str, Any] = {
        "name": name,
        "engine": engine,
        "vcpus": vcpus,
        "memory": memory,
        "disks": [{"path": str(p), "format": _disk_format(p)} for p in disks],
        "nics": nics,
        "paravirt": paravirt,
    }
    if kernel is not None:
        data["boot"] = {"kernel": str(kernel), "initrd": str(initrd), "cmdline": cmdline}
    else:
        data["image"] = image
    try:
        return DomainSpec.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"invalid machine: {format_validation_error(e)}", hint="fix the named option") from e


def _disk_format(path: Path) -> str:
    """``--disk FILE`` takes a raw or qcow2 file as it is: its format is read from the file (a domain
    definition names it instead)."""
    from virtkit.storage.disks import inspect_disk

    return "qcow2" if inspect_disk(path.resolve()).format == "qcow2" else "raw"


@contextlib.contextmanager
def _network_attacher(vm: str, err: Console) -> Iterator[NicAttacher]:
    """Plugs ``vm``'s NICs into virtkit networks (``--network default``, ``bridge=BR``, ...); the TAPs go when the
    block ends."""
    from virtkit.network.args import Publish, parse_network_arg

    manager = None

    def attach(i: int, nic: NetSpec) -> NicConfig:
        nonlocal manager
        assert nic.network is not None
        arg = parse_network_arg(nic.network)
        if arg.note:
            err.print(f"note: {arg.note}", highlight=False)
        if manager is None:
            from virtkit.network.manager import NetworkManager

            manager = NetworkManager()
        return manager.attach_nic(vm, i, arg, [Publish(h, g, p) for p, h, g in nic.forwards])

    try:
        yield attach
    finally:
        if manager is not None:
            manager.detach_vm(vm)


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
    name = f"run-{secrets.token_hex(3)}"
    domain = machine_spec(
        name,
        engine=eng.name,
        image=image,
        kernel=kernel,
        initrd=initrd,
        cmdline=cmdline,
        memory=memory,
        vcpus=vcpus,
        disks=disks,
        networks=networks,
        publish=publish,
        paravirt=paravirt,
    )
    kernel_version: str | None = None

    def boot_image(image_name: str) -> BootImage:
        nonlocal kernel_version
        img = build_image_with_progress(image_name, err)
        kernel_version = img.kernel_version
        return BootImage(kernel=img.kernel, initrd=img.initrd, cmdline=cmdline)

    technique = avail.technique.value if avail.technique else "?"
    results: list[tuple[tuple[str, ...], ExecResult]] = []
    with contextlib.ExitStack() as nic_stack:
        networks_of_vm = nic_stack.enter_context(_network_attacher(name, err))
        spec = resolve(domain, images=boot_image, networks=networks_of_vm)
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
                "kernel": str(spec.boot.kernel),
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
