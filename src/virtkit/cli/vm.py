"""virsh-style domain commands over virtkitd's API (plus Multipass-style ``launch``, ``exec``, ``shell``).

:func:`register` adds them to the top-level app (``virtkit start vm1``); ``python -m virtkit.cli.vm`` runs them
alone. Each verb is one call (or a few) on :class:`virtkit.client.RawClient`, printed by
:mod:`virtkit.cli.output`; the daemon is found (and started) as :mod:`virtkit.cli.remote` says.
"""

from __future__ import annotations

import contextlib
import secrets
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from virtkit.cli import hot, output
from virtkit.cli.remote import api, names
from virtkit.config import defaults
from virtkit.errors import ConfigError, VirtkitError

app = typer.Typer(
    name="virtkit",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Manage virtual machines through virtkitd.",
    epilog=output.EXIT_CODES_HELP,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output (the API's own).")]
Name = Annotated[str, typer.Argument(metavar="VM", help="Domain name.", autocompletion=names)]
Snapshot = Annotated[str, typer.Argument(metavar="SNAPSHOT", help="Snapshot name.")]
Names = Annotated[list[str], typer.Argument(metavar="VM", help="Domain names.", autocompletion=names)]


def _when(ts: float, fmt: str = "%Y-%m-%d %H:%M:%S %z") -> str:
    return time.strftime(fmt, time.localtime(ts))


# -- listing and info
@app.command("list")
def list_(
    all: Annotated[bool, typer.Option("--all", help="Include shut-off domains.")] = False, json_out: JsonOpt = False
) -> None:
    """List domains (running and paused; --all adds the others)."""
    hot.list_domains(all, json_out)


@app.command()
def dominfo(name: Name, json_out: JsonOpt = False) -> None:
    """State, engine, technique, vCPUs, memory, CPU time, uptime and cgroup limits of a domain."""
    hot.dominfo(name, json_out)


@app.command()
def domstats(name: Name, json_out: JsonOpt = False) -> None:
    """CPU, memory, block and network counters of a domain."""
    with api() as c:
        s = c.stats(name)
    if json_out:
        output.print_json(s)
        return
    cpu, used, limit = s.get("cpu_time_s"), s.get("memory_used_bytes"), s.get("memory_limit_bytes")
    output.kv(
        [
            ("Domain", s["name"]),
            ("state", s["state"]),
            ("cpu.time", f"{cpu:.3f}s" if cpu is not None else None),
            ("vcpu.current", s["vcpus"]),
            ("balloon.maximum", f"{s['memory_mib'] * 1024} KiB"),
            ("memory.used", f"{used // 1024} KiB" if used is not None else None),
            ("memory.limit", f"{limit // 1024} KiB" if limit else None),
            *[(f"block.{n}.{k}", v) for n, b in enumerate(s.get("block") or []) for k, v in b.items()],
            *[(f"net.{n}.{k}", v) for n, x in enumerate(s.get("net") or []) for k, v in x.items()],
        ]
    )


@app.command()
def domifaddr(name: Name, json_out: JsonOpt = False) -> None:
    """A domain's interfaces and addresses (guest agent, DHCP leases and reservations, the host's ARP table)."""
    with api() as c:
        ifs = c.interfaces(name)
    if json_out:
        output.print_json(ifs)
        return
    output.table(
        ["Name", "MAC address", "Protocol", "Address"],
        [
            [i["name"], i.get("mac"), "-" if a is None else ("ipv6" if ":" in a else "ipv4"), a]
            for i in ifs
            for a in (i.get("addresses") or [None])
        ],
    )


# -- definitions
@app.command()
def define(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Spec file: .toml, .yaml or .json.")],
    json_out: JsonOpt = False,
) -> None:
    """Define a domain from a spec file (TOML, YAML or JSON)."""
    from virtkit.daemon.domain import load_spec_file

    with api() as c:
        i = c.define(load_spec_file(file).model_dump(mode="json"))
    if json_out:
        output.print_json(i)
    else:
        output.line(f"Domain '{i['name']}' defined from {file}")


@app.command()
def undefine(name: Name) -> None:
    """Remove a domain's definition (it must be shut off)."""
    with api() as c:
        c.undefine(name)
    output.line(f"Domain '{name}' has been undefined")


@app.command()
def autostart(
    name: Name, disable: Annotated[bool, typer.Option("--disable", help="Do not start it with virtkitd.")] = False
) -> None:
    """Start the domain whenever virtkitd starts (--disable turns it off)."""
    with api() as c:
        c.set_autostart(name, not disable)
    output.line(f"Domain '{name}' {'unmarked' if disable else 'marked'} as autostarted")


# -- lifecycle
@app.command()
def start(names: Names, json_out: JsonOpt = False) -> None:
    """Start defined domains."""
    hot.lifecycle("start", names, json_out)


@app.command()
def shutdown(
    names: Names,
    timeout: Annotated[
        float, typer.Option(help="Seconds before it is destroyed instead.")
    ] = defaults.SHUTDOWN_TIMEOUT_S,
    json_out: JsonOpt = False,
) -> None:
    """Ask domains to power off (ACPI/agent); destroy them if they have not after --timeout."""
    hot.lifecycle("shutdown", names, json_out, {"timeout": timeout})


@app.command()
def reboot(names: Names, json_out: JsonOpt = False) -> None:
    """Reboot domains."""
    hot.lifecycle("reboot", names, json_out)


@app.command()
def destroy(names: Names, json_out: JsonOpt = False) -> None:
    """Stop domains at once (like pulling the plug)."""
    hot.lifecycle("destroy", names, json_out)


@app.command()
def suspend(names: Names, json_out: JsonOpt = False) -> None:
    """Pause domains."""
    hot.lifecycle("suspend", names, json_out)


@app.command()
def resume(names: Names, json_out: JsonOpt = False) -> None:
    """Resume paused domains."""
    hot.lifecycle("resume", names, json_out)


# -- Multipass-style
def launch_target(
    first: str | None, second: str | None, name: str | None, image: str | None, known: tuple[str, ...]
) -> tuple[str | None, str]:
    """Which of ``launch``'s words is the image and which the name: ``(name or None, image)``.

    ``launch IMAGE NAME`` (Incus); ``launch --name NAME IMAGE`` and ``launch IMAGE`` (Multipass: a random
    name); ``launch NAME`` (virtkit's own). One word is the image when ``--name`` is given or when it names a
    known image (and ``--image`` is not given); otherwise it is the name.
    """
    if second is not None:
        if name is not None or image is not None:
            raise ConfigError(
                f"launch got IMAGE and NAME as words ({first} {second}) and --name/--image too",
                hint="give each once: `virtkit launch IMAGE NAME` or `virtkit launch --name NAME IMAGE`",
            )
        assert first is not None
        return second, first
    if first is None:
        return name, image or defaults.DEFAULT_IMAGE
    if name is not None:
        if image is not None:
            raise ConfigError(f"launch got the image twice ({first!r} and --image {image})", hint="drop one of them")
        return name, first
    if image is None and first in known:
        return None, first
    return first, image or defaults.DEFAULT_IMAGE


@app.command()
def launch(
    first: Annotated[
        str | None, typer.Argument(metavar="IMAGE|NAME", help="The image, or the name (see above).", show_default=False)
    ] = None,
    second: Annotated[
        str | None, typer.Argument(metavar="NAME", help="The name, after an IMAGE (Incus).", show_default=False)
    ] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Domain name (default: a random one).")] = None,
    image: Annotated[
        str | None, typer.Option(help=f"Guest image (default: {defaults.DEFAULT_IMAGE}).", show_default=False)
    ] = None,
    memory: Annotated[str, typer.Option(help="Guest memory, e.g. 256M or 1G.")] = f"{defaults.DEFAULT_MEMORY_MIB}M",
    vcpus: Annotated[int, typer.Option(help="Number of vCPUs.")] = defaults.DEFAULT_VCPUS,
    cpus: Annotated[float | None, typer.Option(help="cgroup CPU limit in host CPUs (default: vcpus).")] = None,
    engine: Annotated[str, typer.Option(help="auto, qemu or native.")] = "auto",
    network: Annotated[
        list[str] | None, typer.Option(metavar="NET", help="Network to attach (e.g. default, user); repeat.")
    ] = None,
    autostart: Annotated[bool, typer.Option(help="Start with virtkitd.")] = False,
    wait: Annotated[bool, typer.Option(help="Wait until the guest agent answers.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the guest.")] = defaults.READY_TIMEOUT_S,
    json_out: JsonOpt = False,
) -> None:
    """Define and start a domain from an image in one step, and wait until it is ready.

    \b
    The forms other tools' users type all work:
      virtkit launch NAME [--image IMAGE]     (virtkit, as README shows)
      virtkit launch --name NAME IMAGE        (Multipass; -n NAME for short)
      virtkit launch IMAGE                    (Multipass: a random name)
      virtkit launch IMAGE NAME               (Incus)

    A single word is the image when --name is given or when it names a known image (tiny); otherwise it is the
    name. Without a name the domain gets a random one, vm-XXXXXX.
    """
    from virtkit.daemon.domain import validate_spec
    from virtkit.images.build import KNOWN_IMAGES

    with output.reported():
        picked, img = launch_target(first, second, name, image, KNOWN_IMAGES)
    vm = picked or f"vm-{secrets.token_hex(3)}"
    spec: dict[str, Any] = {
        "name": vm,
        "image": img,
        "memory": memory,
        "vcpus": vcpus,
        "engine": engine,
        "autostart": autostart,
        "nics": network or [],
    }
    if cpus is not None:
        spec["limits"] = {"cpus": cpus}
    with api() as c, output.progress(f"defining {vm}", enabled=not json_out) as step:
        validate_spec(spec)  # the field paths of a bad flag, before anything is made
        c.define(spec)
        t0 = time.monotonic()
        step(f"starting {vm} (building image {img} if needed)")
        try:
            c.action(vm, "start")
            if wait:
                step(f"waiting for {vm}'s guest agent")
                c.wait_agent(vm, timeout)
        except (VirtkitError, KeyboardInterrupt):
            with contextlib.suppress(VirtkitError):  # launch is one step: leave nothing half-made
                c.action(vm, "destroy")
            with contextlib.suppress(VirtkitError):
                c.undefine(vm)
            raise
        i = c.info(vm)
    if json_out:
        output.print_json(i)
    else:
        output.line(f"Launched: {vm} from {img} ({i['engine']}, {i.get('technique')}) in {time.monotonic() - t0:.1f}s")


@app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_(
    ctx: typer.Context,
    name: Name,
    timeout: Annotated[float, typer.Option(help="Seconds the command may run.")] = hot.EXEC_TIMEOUT_S,
    json_out: JsonOpt = False,
) -> None:
    """Run a command in the guest: `virtkit exec VM -- CMD ARGS`; exits with the command's code."""
    hot.exec_in(name, list(ctx.args), timeout, json_out)


@app.command()
def shell(name: Name) -> None:
    """A shell in the guest over the agent: each line runs with `sh -c` in the current directory."""
    cwd = "/"
    code = 0
    with api() as c:
        if sys.stdin.isatty():
            output.note(f"virtkit: shell on {name} over the guest agent; Ctrl-D leaves")
        while True:
            try:
                text = input(f"{name}:{cwd}$ " if sys.stdin.isatty() else "")
            except EOFError:
                break
            if not text.strip():
                continue
            script = (
                f'cd {shlex.quote(cwd)} 2>/dev/null; {text}\n__vk_rc=$?; echo; echo "__VK_CWD=$(pwd)"; exit $__vk_rc'
            )
            r = c.exec(name, ["sh", "-c", script], timeout=3600)
            stdout = r["stdout"]
            marker = stdout.rfind("\n__VK_CWD=")
            if marker >= 0:
                cwd = stdout[marker + 10 :].strip() or cwd
                stdout = stdout[:marker]
                if stdout.endswith("\n"):
                    stdout = stdout[:-1]
            sys.stdout.write(stdout)
            sys.stderr.write(r["stderr"])
            sys.stdout.flush()
            code = int(r["exitcode"])
    raise typer.Exit(code)


@app.command()
def console(
    name: Name,
    log: Annotated[bool, typer.Option("--log", help="Print what the guest wrote so far and exit.")] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="With --log: keep printing.")] = False,
) -> None:
    """Attach to the serial console (Ctrl-] detaches), or print its log."""
    from virtkit.cli.console import attach_stream

    with api() as c:
        if log:
            text, off = c.console(name)
            sys.stdout.write(text)
            while follow:
                time.sleep(0.5)
                text, off = c.console(name, off)
                sys.stdout.write(text)
                sys.stdout.flush()
            return
        c.info(name)
        ws = c.console_connect(name)
        output.note(f"Connected to domain '{name}'\r\nEscape character is ^]")
        try:
            attach_stream(ws.send, iter(ws))
        finally:
            ws.close()


# -- snapshots
@app.command("snapshot-create-as")
def snapshot_create_as(
    name: Name,
    snapshot: Snapshot,
    description: Annotated[str, typer.Option("--description", help="Free text kept with the snapshot.")] = "",
    disk_only: Annotated[bool, typer.Option("--disk-only", help="Do not save guest memory.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Snapshot a domain: its disks always, its memory where the engine can."""
    with api() as c, output.progress(f"snapshotting {name}", enabled=not json_out):
        s = c.snapshot_create(name, snapshot, description, memory=False if disk_only else None)
    if json_out:
        output.print_json(s)
    else:
        output.line(f"Domain snapshot {snapshot} created{' (with memory)' if s['memory'] else ' (disks)'}")


@app.command("snapshot-list")
def snapshot_list(name: Name, json_out: JsonOpt = False) -> None:
    """List a domain's snapshots."""
    with api() as c:
        snaps = c.snapshot_list(name)
    if json_out:
        output.print_json(snaps)
        return
    output.table(
        ["Name", "Creation Time", "State", "Memory", "Description"],
        [[s["name"], _when(s["created"]), s["state"], "yes" if s["memory"] else "no", s["description"]] for s in snaps],
    )


@app.command("snapshot-revert")
def snapshot_revert(name: Name, snapshot: Snapshot, json_out: JsonOpt = False) -> None:
    """Return a domain to a snapshot."""
    with api() as c, output.progress(f"reverting {name}", enabled=not json_out):
        i = c.snapshot_revert(name, snapshot)
    if json_out:
        output.print_json(i)
    else:
        output.line(f"Domain '{name}' reverted to snapshot {snapshot} ({i['state']})")


@app.command("snapshot-delete")
def snapshot_delete(name: Name, snapshot: Snapshot) -> None:
    """Delete a snapshot."""
    with api() as c:
        c.snapshot_delete(name, snapshot)
    output.line(f"Domain snapshot {snapshot} deleted")


# -- events
@app.command()
def events(
    since: Annotated[int | None, typer.Option(help="Replay stored events after this sequence.")] = None,
    follow: Annotated[bool, typer.Option(help="Keep listening.")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Print lifecycle events as they happen."""
    import json

    with api() as c:
        for ev in c.events(since=since, follow=follow):
            if json_out:
                output.line(json.dumps(ev))
            else:
                t = _when(ev["time"], "%H:%M:%S")
                output.line(
                    f"{t} #{ev['seq']} {ev['type']} {ev.get('domain') or ''} {ev.get('state') or ''} {ev['reason']}"
                )


def command_name(cmd: Any) -> str:
    return str(cmd.name or cmd.callback.__name__.replace("_", "-"))


def register(parent: typer.Typer, exclude: tuple[str, ...] = ()) -> None:
    """Add the commands here to ``parent`` at its top level (virsh style: `virtkit start vm1`), except those
    in ``exclude`` and those ``parent`` already has."""
    taken = {command_name(c) for c in parent.registered_commands} | set(exclude)
    for cmd in app.registered_commands:
        if command_name(cmd) not in taken:
            parent.registered_commands.append(cmd)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
