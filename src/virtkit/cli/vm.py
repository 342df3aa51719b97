"""virsh-style commands over virtkitd's API (plus Multipass-style ``launch``, ``exec``, ``shell``).

The lead registers them at the top level with :func:`register`; ``python -m virtkit.cli.vm`` runs them alone.
The daemon is found at ``$VIRTKIT_URL`` (TCP, with ``$VIRTKIT_TOKEN``) or the local unix socket
(``$VIRTKIT_SOCKET``, default ``<state dir>/virtkitd.sock``); a local daemon is started on demand.

Exit codes scripts can rely on: 0 success; ``exec`` returns the guest command's own code; 2 bad usage;
3 no such domain/snapshot; 4 wrong state or duplicate name (e.g. starting a running domain); 5 the daemon
is unreachable; 124 the guest did not become ready in time; 125 any other virtkit error; 130 interrupted.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from virtkit.client import ApiError, Client, DaemonUnreachable, default_socket
from virtkit.config import defaults
from virtkit.errors import GuestTimeout, VirtkitError

EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_UNREACHABLE = 5
EXIT_TIMEOUT = 124
EXIT_ERROR = 125
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="virtkit",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    help="Manage virtual machines through virtkitd.",
)
out = Console()
err = Console(stderr=True, soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def _client() -> Client:
    url = os.environ.get("VIRTKIT_URL")
    if url:
        return Client(url=url, token=os.environ.get("VIRTKIT_TOKEN"))
    start = os.environ.get("VIRTKIT_NO_DAEMON_AUTOSTART", "") not in ("1", "true", "yes")
    return Client(socket=default_socket(), start_daemon=start)


def _exit_code(e: VirtkitError) -> int:
    if isinstance(e, DaemonUnreachable):
        return EXIT_UNREACHABLE
    if isinstance(e, GuestTimeout):
        return EXIT_TIMEOUT
    if isinstance(e, ApiError):
        return {404: EXIT_NOT_FOUND, 409: EXIT_CONFLICT, 400: EXIT_USAGE, 422: EXIT_USAGE, 504: EXIT_TIMEOUT}.get(
            e.status, EXIT_ERROR
        )
    from virtkit.errors import ConfigError

    if isinstance(e, ConfigError):
        return EXIT_USAGE
    return EXIT_ERROR


@contextlib.contextmanager
def api() -> Iterator[Client]:
    """A client; any virtkit error becomes one red line, its fix, and a reliable exit code."""
    try:
        with _client() as c:
            yield c
    except VirtkitError as e:
        err.print(f"[bold red]virtkit: error:[/] {e.message}", highlight=False)
        if e.hint:
            err.print(f"  fix: {e.hint}", highlight=False, markup=False)
        raise typer.Exit(_exit_code(e)) from None
    except KeyboardInterrupt:
        err.print("virtkit: interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _names(incomplete: str) -> list[str]:
    """Shell completion for domain names (silent when the daemon is not there)."""
    try:
        with Client(socket=default_socket(), timeout=2) as c:
            return [d.name for d in c.list(all=True) if d.name.startswith(incomplete)]
    except Exception:
        return []


Name = Annotated[str, typer.Argument(help="Domain name.", autocompletion=_names)]


def _dump(obj: Any) -> None:
    if isinstance(obj, list):
        data = [o.model_dump(mode="json") if hasattr(o, "model_dump") else o for o in obj]
    else:
        data = obj.model_dump(mode="json") if hasattr(obj, "model_dump") else obj
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _table(cols: list[str], rows: list[list[str]]) -> None:
    t = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for c in cols:
        t.add_column(c)
    for r in rows:
        t.add_row(*r)
    out.print(t)


def _kv(pairs: list[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in pairs) + 1
    for k, v in pairs:
        out.print(f"{k + ':':<{width}} {'-' if v is None else v}", highlight=False, markup=False)


@contextlib.contextmanager
def _progress(what: str, json_out: bool) -> Iterator[Callable[[str], None]]:
    """A spinner with elapsed time on stderr for long work (hidden with --json or without a terminal)."""
    if json_out or not err.is_terminal:
        yield lambda s: None
        return
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, transient=True
    ) as p:
        task = p.add_task(what)
        yield lambda s: p.update(task, description=s)


# -- listing and info
@app.command("list")
def list_(
    all: Annotated[bool, typer.Option("--all", help="Include shut-off domains.")] = False, json_out: JsonOpt = False
) -> None:
    """List domains (running and paused; --all adds the others)."""
    with api() as c:
        doms = c.list(all=all)
    if json_out:
        _dump(doms)
        return
    _table(
        ["Name", "State", "Engine", "Autostart"],
        [[d.name, str(d.state), d.engine, "yes" if d.autostart else "no"] for d in doms],
    )


@app.command()
def dominfo(name: Name, json_out: JsonOpt = False) -> None:
    """State, engine, technique, vCPUs, memory, CPU time, uptime and cgroup limits of a domain."""
    with api() as c:
        i = c.info(name)
    if json_out:
        _dump(i)
        return
    _kv(
        [
            ("Name", i.name),
            ("State", i.state + (f" ({i.state_reason})" if i.state_reason else "")),
            ("Engine", i.engine),
            ("Technique", i.technique),
            ("vCPUs", i.vcpus),
            ("Memory", f"{i.memory_mib} MiB"),
            ("CPU time", f"{i.cpu_time_s:.1f}s" if i.cpu_time_s is not None else None),
            ("Uptime", f"{i.uptime_s:.0f}s" if i.uptime_s is not None else None),
            ("Autostart", "enable" if i.autostart else "disable"),
            ("Engine PID", i.engine_pid),
            ("Supervisor PID", i.supervisor_pid),
            *[(f"cgroup {k}", v) for k, v in i.cgroup.items()],
        ]
    )


@app.command()
def domstats(name: Name, json_out: JsonOpt = False) -> None:
    """CPU, memory, block and network counters of a domain."""
    with api() as c:
        s = c.stats(name)
    if json_out:
        _dump(s)
        return
    _kv(
        [
            ("Domain", s.name),
            ("state", s.state),
            ("cpu.time", f"{s.cpu_time_s:.3f}s" if s.cpu_time_s is not None else None),
            ("vcpu.current", s.vcpus),
            ("balloon.maximum", f"{s.memory_mib * 1024} KiB"),
            ("memory.used", f"{s.memory_used_bytes // 1024} KiB" if s.memory_used_bytes is not None else None),
            ("memory.limit", f"{s.memory_limit_bytes // 1024} KiB" if s.memory_limit_bytes else None),
        ]
    )
    for i, b in enumerate(s.block):
        _kv([(f"block.{i}.{k}", v) for k, v in b.items()])
    for i, n in enumerate(s.net):
        _kv([(f"net.{i}.{k}", v) for k, v in n.items()])


@app.command()
def domifaddr(name: Name, json_out: JsonOpt = False) -> None:
    """The guest's network interfaces and addresses (from the guest agent)."""
    with api() as c:
        ifs = c.interfaces(name)
    if json_out:
        _dump(ifs)
        return
    _table(
        ["Name", "MAC address", "Protocol", "Address"],
        [[i.name, i.mac or "-", "ipv6" if ":" in a else "ipv4", a] for i in ifs for a in (i.addresses or ["-"])],
    )


# -- definitions
@app.command()
def define(
    file: Annotated[Path, typer.Argument(help="Spec file: .toml, .yaml or .json.")], json_out: JsonOpt = False
) -> None:
    """Define a domain from a spec file (TOML, YAML or JSON)."""
    from virtkit.daemon.domain import load_spec_file

    with api() as c:
        spec = load_spec_file(file)
        i = c.define(spec)
    if json_out:
        _dump(i)
    else:
        out.print(f"Domain '{i.name}' defined from {file}", highlight=False)


@app.command()
def undefine(name: Name) -> None:
    """Remove a domain's definition (it must be shut off)."""
    with api() as c:
        c.undefine(name)
    out.print(f"Domain '{name}' has been undefined", highlight=False)


@app.command()
def autostart(name: Name, disable: Annotated[bool, typer.Option("--disable")] = False) -> None:
    """Start the domain whenever virtkitd starts (--disable turns it off)."""
    with api() as c:
        c.set_autostart(name, not disable)
    out.print(f"Domain '{name}' {'unmarked' if disable else 'marked'} as autostarted", highlight=False)


# -- lifecycle
def _simple(
    verb: str, done: str, call: Callable[[Client, str], Any], json_out: bool, names: list[str], slow: bool = False
) -> None:
    results = []
    with api() as c:
        for n in names:
            with _progress(f"{verb} {n}", json_out or not slow):
                results.append(call(c, n))
            if not json_out:
                out.print(f"Domain '{n}' {done}", highlight=False)
    if json_out:
        _dump(results)


@app.command()
def start(
    names: Annotated[list[str], typer.Argument(help="Domain names.", autocompletion=_names)], json_out: JsonOpt = False
) -> None:
    """Start defined domains."""
    _simple("starting", "started", lambda c, n: c.start(n), json_out, names, slow=True)


@app.command()
def shutdown(
    names: Annotated[list[str], typer.Argument(autocompletion=_names)],
    timeout: Annotated[
        float, typer.Option(help="Seconds before it is destroyed instead.")
    ] = defaults.SHUTDOWN_TIMEOUT_S,
    json_out: JsonOpt = False,
) -> None:
    """Ask domains to power off (ACPI/agent); destroy them if they have not after --timeout."""
    _simple("shutting down", "is shut off", lambda c, n: c.shutdown(n, timeout), json_out, names, slow=True)


@app.command()
def reboot(names: Annotated[list[str], typer.Argument(autocompletion=_names)], json_out: JsonOpt = False) -> None:
    """Reboot domains."""
    _simple("rebooting", "is being rebooted", lambda c, n: c.reboot(n), json_out, names)


@app.command()
def destroy(names: Annotated[list[str], typer.Argument(autocompletion=_names)], json_out: JsonOpt = False) -> None:
    """Stop domains at once (like pulling the plug)."""
    _simple("destroying", "destroyed", lambda c, n: c.destroy(n), json_out, names)


@app.command()
def suspend(names: Annotated[list[str], typer.Argument(autocompletion=_names)], json_out: JsonOpt = False) -> None:
    """Pause domains."""
    _simple("suspending", "suspended", lambda c, n: c.suspend(n), json_out, names)


@app.command()
def resume(names: Annotated[list[str], typer.Argument(autocompletion=_names)], json_out: JsonOpt = False) -> None:
    """Resume paused domains."""
    _simple("resuming", "resumed", lambda c, n: c.resume(n), json_out, names)


# -- Multipass-style
@app.command()
def launch(
    name: Annotated[str | None, typer.Argument(help="Domain name (default: a random one).")] = None,
    image: Annotated[str, typer.Option(help="Guest image.")] = defaults.DEFAULT_IMAGE,
    memory: Annotated[str, typer.Option(help="Guest memory, e.g. 256M or 1G.")] = f"{defaults.DEFAULT_MEMORY_MIB}M",
    vcpus: Annotated[int, typer.Option(help="Number of vCPUs.")] = defaults.DEFAULT_VCPUS,
    cpus: Annotated[float | None, typer.Option(help="cgroup CPU limit in host CPUs (default: vcpus).")] = None,
    engine: Annotated[str, typer.Option(help="auto, qemu or native.")] = "auto",
    network: Annotated[list[str] | None, typer.Option(help="Network to attach (e.g. default, user); repeat.")] = None,
    autostart: Annotated[bool, typer.Option(help="Start with virtkitd.")] = False,
    wait: Annotated[bool, typer.Option(help="Wait until the guest agent answers.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the guest.")] = defaults.READY_TIMEOUT_S,
    json_out: JsonOpt = False,
) -> None:
    """Define and start a domain from an image in one step, and wait until it is ready."""
    name = name or f"vm-{secrets.token_hex(3)}"
    spec: dict[str, Any] = {
        "name": name,
        "image": image,
        "memory": memory,
        "vcpus": vcpus,
        "engine": engine,
        "autostart": autostart,
        "nics": network or [],
    }
    if cpus is not None:
        spec["limits"] = {"cpus": cpus}
    from virtkit.daemon.domain import validate_spec

    with api() as c, _progress(f"defining {name}", json_out) as step:
        validate_spec(spec)
        c.define(spec)
        t0 = time.monotonic()
        step(f"starting {name} (building image {image} if needed)")
        try:
            c.start(name)
            if wait:
                step(f"waiting for {name}'s guest agent")
                c.wait_agent(name, timeout)
        except VirtkitError:
            with contextlib.suppress(VirtkitError):  # launch is one step: leave nothing half-made
                c.destroy(name)
            with contextlib.suppress(VirtkitError):
                c.undefine(name)
            raise
        i = c.info(name)
    if json_out:
        _dump(i)
    else:
        out.print(f"Launched: {name} ({i.engine}, {i.technique}) in {time.monotonic() - t0:.1f}s", highlight=False)


@app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_(
    ctx: typer.Context,
    name: Name,
    timeout: Annotated[float, typer.Option(help="Seconds the command may run.")] = 60.0,
    json_out: JsonOpt = False,
) -> None:
    """Run a command in the guest: `virtkit exec VM -- CMD ARGS`; exits with the command's code."""
    argv = list(ctx.args)
    if not argv:
        err.print("virtkit: error: nothing to run; fix: virtkit exec VM -- CMD ARGS")
        raise typer.Exit(EXIT_USAGE)
    with api() as c:
        r = c.exec(name, argv, timeout=timeout)
    if json_out:
        _dump(r)
    else:
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr)
        sys.stdout.flush()
    raise typer.Exit(r.exitcode)


@app.command()
def shell(name: Name) -> None:
    """A shell in the guest over the agent: each line runs with `sh -c` in the current directory."""
    cwd = "/"
    with api() as c:
        if sys.stdin.isatty():
            err.print(f"virtkit: shell on {name} over the guest agent; Ctrl-D leaves", highlight=False)
        code = 0
        while True:
            try:
                line = input(f"{name}:{cwd}$ " if sys.stdin.isatty() else "")
            except EOFError:
                break
            if not line.strip():
                continue
            script = (
                f'cd {shlex.quote(cwd)} 2>/dev/null; {line}\n__vk_rc=$?; echo; echo "__VK_CWD=$(pwd)"; exit $__vk_rc'
            )
            r = c.exec(name, ["sh", "-c", script], timeout=3600)
            stdout = r.stdout
            marker = stdout.rfind("\n__VK_CWD=")
            if marker >= 0:
                cwd = stdout[marker + 10 :].strip() or cwd
                stdout = stdout[:marker]
                if stdout.endswith("\n"):
                    stdout = stdout[:-1]
            sys.stdout.write(stdout)
            sys.stderr.write(r.stderr)
            sys.stdout.flush()
            code = r.exitcode
    raise typer.Exit(code)


@app.command()
def console(
    name: Name,
    log: Annotated[bool, typer.Option("--log", help="Print what the guest wrote so far and exit.")] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="With --log: keep printing.")] = False,
) -> None:
    """Attach to the serial console (Ctrl-] detaches), or print its log."""
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
        _attach(c, name)


def _attach(c: Client, name: str) -> None:
    import select
    import termios
    import threading
    import tty

    ws = c.console_connect(name)
    stdin = sys.stdin.fileno()
    old = termios.tcgetattr(stdin) if os.isatty(stdin) else None
    err.print(f"Connected to domain '{name}'\r\nEscape character is ^]", highlight=False)
    done = threading.Event()

    def pump() -> None:
        with contextlib.suppress(Exception):
            for msg in ws:
                data = msg if isinstance(msg, bytes) else msg.encode()
                os.write(sys.stdout.fileno(), data)
        done.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        if old is not None:
            tty.setraw(stdin)
        while not done.is_set():
            r, _, _ = select.select([stdin], [], [], 0.2)
            if not r:
                continue
            data = os.read(stdin, 1024)
            if not data or b"\x1d" in data:
                if data.split(b"\x1d")[0]:
                    ws.send(data.split(b"\x1d")[0])
                break
            ws.send(data)
    finally:
        if old is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, old)
        ws.close()
    err.print("")


# -- snapshots
@app.command("snapshot-create-as")
def snapshot_create_as(
    name: Name,
    snapshot: Annotated[str, typer.Argument(help="Snapshot name.")],
    description: Annotated[str, typer.Option("--description")] = "",
    disk_only: Annotated[bool, typer.Option("--disk-only", help="Do not save guest memory.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Snapshot a domain: its disks always, its memory where the engine can."""
    with api() as c, _progress(f"snapshotting {name}", json_out):
        s = c.snapshot_create(name, snapshot, description, memory=False if disk_only else None)
    if json_out:
        _dump(s)
    else:
        out.print(f"Domain snapshot {snapshot} created{' (with memory)' if s.memory else ' (disks)'}", highlight=False)


@app.command("snapshot-list")
def snapshot_list(name: Name, json_out: JsonOpt = False) -> None:
    """List a domain's snapshots."""
    with api() as c:
        snaps = c.snapshot_list(name)
    if json_out:
        _dump(snaps)
        return
    _table(
        ["Name", "Creation Time", "State", "Memory", "Description"],
        [
            [
                s.name,
                time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(s.created)),
                str(s.state),
                "yes" if s.memory else "no",
                s.description,
            ]
            for s in snaps
        ],
    )


@app.command("snapshot-revert")
def snapshot_revert(name: Name, snapshot: str, json_out: JsonOpt = False) -> None:
    """Return a domain to a snapshot."""
    with api() as c, _progress(f"reverting {name}", json_out):
        i = c.snapshot_revert(name, snapshot)
    if json_out:
        _dump(i)
    else:
        out.print(f"Domain '{name}' reverted to snapshot {snapshot} ({i.state})", highlight=False)


@app.command("snapshot-delete")
def snapshot_delete(name: Name, snapshot: str) -> None:
    """Delete a snapshot."""
    with api() as c:
        c.snapshot_delete(name, snapshot)
    out.print(f"Domain snapshot {snapshot} deleted", highlight=False)


# -- networks
@app.command("net-list")
def net_list(
    all: Annotated[bool, typer.Option("--all", help="Include inactive networks.")] = False, json_out: JsonOpt = False
) -> None:
    """List virtual networks."""
    with api() as c:
        nets = c.networks(all=True)
    if not all:
        nets = [n for n in nets if n.get("state") != "inactive"]
    if json_out:
        _dump(nets)
        return
    _table(
        ["Name", "State", "Autostart", "Mode", "Bridge", "Subnet"],
        [
            [
                str(n.get("name")),
                str(n.get("state")),
                "yes" if n.get("autostart") else "no",
                str(n.get("mode")),
                str(n.get("bridge") or "-"),
                str(n.get("subnet") or "-"),
            ]
            for n in nets
        ],
    )


@app.command("net-define")
def net_define(
    file: Annotated[Path, typer.Argument(help="Network spec (.toml, .yaml or .json).")], json_out: JsonOpt = False
) -> None:
    """Define a virtual network from a spec file."""
    from virtkit.daemon.domain import read_mapping

    with api() as c:
        r = c.network_define(read_mapping(file))
    if json_out:
        _dump(r)
    else:
        out.print(f"Network {r.get('name')} defined from {file}", highlight=False)


@app.command("net-undefine")
def net_undefine(name: str) -> None:
    """Remove a network's definition."""
    with api() as c:
        c.network_undefine(name)
    out.print(f"Network {name} has been undefined", highlight=False)


@app.command("net-start")
def net_start(name: str, json_out: JsonOpt = False) -> None:
    """Start a virtual network."""
    with api() as c:
        r = c.network_start(name)
    _dump(r) if json_out else out.print(f"Network {name} started", highlight=False)


@app.command("net-destroy")
def net_destroy(name: str, json_out: JsonOpt = False) -> None:
    """Stop a virtual network."""
    with api() as c:
        r = c.network_destroy(name)
    _dump(r) if json_out else out.print(f"Network {name} destroyed", highlight=False)


@app.command("net-autostart")
def net_autostart(name: str, disable: Annotated[bool, typer.Option("--disable")] = False) -> None:
    """Start the network with virtkitd (--disable turns it off)."""
    with api() as c:
        c.network_set_autostart(name, not disable)
    out.print(f"Network {name} {'unmarked' if disable else 'marked'} as autostarted", highlight=False)


@app.command("net-info")
def net_info(name: str, json_out: JsonOpt = False) -> None:
    """Show a virtual network."""
    with api() as c:
        r = c.network_info(name)
    if json_out:
        _dump(r)
    else:
        _kv([(k, v) for k, v in r.items()])


@app.command("net-dhcp-leases")
def net_dhcp_leases(name: str, json_out: JsonOpt = False) -> None:
    """DHCP leases handed out on a network."""
    with api() as c:
        leases = c.network_leases(name)
    if json_out:
        _dump(leases)
        return
    _table(
        ["MAC address", "IP address", "Hostname", "Expiry"],
        [
            [
                str(x.get("mac")),
                str(x.get("ip")),
                str(x.get("hostname") or "-"),
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(x.get("expiry") or 0))),
            ]
            for x in leases
        ],
    )


@app.command()
def events(
    since: Annotated[int | None, typer.Option(help="Replay stored events after this sequence.")] = None,
    follow: Annotated[bool, typer.Option(help="Keep listening.")] = True,
    json_out: JsonOpt = False,
) -> None:
    """Print lifecycle events as they happen."""
    with api() as c:
        for ev in c.events(since=since, follow=follow):
            if json_out:
                sys.stdout.write(ev.model_dump_json() + "\n")
            else:
                t = time.strftime("%H:%M:%S", time.localtime(ev.time))
                out.print(f"{t} #{ev.seq} {ev.type} {ev.domain or ''} {ev.state or ''} {ev.reason}", highlight=False)
            sys.stdout.flush()


def command_name(cmd: Any) -> str:
    return str(cmd.name or cmd.callback.__name__.replace("_", "-"))


def register(parent: typer.Typer, exclude: tuple[str, ...] = ()) -> None:
    """Add the commands here to ``parent`` at its top level (virsh style: `virtkit start vm1`), except those
    in ``exclude`` and those ``parent`` already has (e.g. the network layer's own ``net-*`` verbs)."""
    taken = {command_name(c) for c in parent.registered_commands} | set(exclude)
    for cmd in app.registered_commands:
        if command_name(cmd) not in taken:
            parent.registered_commands.append(cmd)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
