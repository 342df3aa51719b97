"""The verbs typed most often (``list``, ``dominfo``, ``start`` and the other lifecycle verbs, ``exec``): their
bodies, importable without typer. The typer commands in :mod:`virtkit.cli.vm` call them, and so does the
entry point's fast path (:mod:`virtkit.cli.main`), which skips building the command tree for these verbs."""

from __future__ import annotations

import sys
from typing import Any

from virtkit.cli import output
from virtkit.cli.remote import api

EXEC_TIMEOUT_S = 60.0  # what `exec` allows a command without --timeout


def list_domains(all: bool, json_out: bool) -> None:
    with api() as c:
        doms = c.list(all=all)
    if json_out:
        output.print_json(doms)
        return
    output.table(
        ["Name", "State", "Engine", "Autostart"],
        [[d["name"], d["state"], d["engine"], "yes" if d["autostart"] else "no"] for d in doms],
    )


def dominfo(name: str, json_out: bool) -> None:
    with api() as c:
        i = c.info(name)
    if json_out:
        output.print_json(i)
        return
    cpu, up = i.get("cpu_time_s"), i.get("uptime_s")
    output.kv(
        [
            ("Name", i["name"]),
            ("State", i["state"] + (f" ({i['state_reason']})" if i.get("state_reason") else "")),
            ("Engine", i["engine"]),
            ("Technique", i.get("technique")),
            ("vCPUs", i["vcpus"]),
            ("Memory", f"{i['memory_mib']} MiB"),
            ("CPU time", f"{cpu:.1f}s" if cpu is not None else None),
            ("Uptime", f"{up:.0f}s" if up is not None else None),
            ("Autostart", "enable" if i["autostart"] else "disable"),
            ("Engine PID", i.get("engine_pid")),
            ("Supervisor PID", i.get("supervisor_pid")),
            *[(f"cgroup {k}", v) for k, v in (i.get("cgroup") or {}).items()],
        ]
    )


# the lifecycle verbs: what the spinner says while each runs, and the line printed when it is done
WORDS = {
    "start": ("starting", "started"),
    "shutdown": ("shutting down", "is shut off"),
    "reboot": ("rebooting", "is being rebooted"),
    "destroy": ("destroying", "destroyed"),
    "suspend": ("suspending", "suspended"),
    "resume": ("resuming", "resumed"),
}


def lifecycle(action: str, names: list[str], json_out: bool, body: dict[str, Any] | None = None) -> None:
    """One lifecycle verb on each named domain, in order; stops at the first error."""
    results = []
    with api() as c:
        for n in names:
            doing, done = WORDS[action]
            with output.progress(f"{doing} {n}", enabled=not json_out):
                results.append(c.action(n, action, body))
            if not json_out:
                output.line(f"Domain '{n}' {done}")
    if json_out:
        output.print_json(results)


def exec_in(name: str, argv: list[str], timeout: float, json_out: bool) -> None:
    """Run ``argv`` in the guest; exits with its exit code."""
    if not argv:
        output.error("nothing to run", "virtkit exec VM -- CMD ARGS")
        raise SystemExit(output.EXIT_USAGE)
    with api() as c:
        r = c.exec(name, argv, timeout=timeout)
    if json_out:
        output.print_json(r)
    else:
        sys.stdout.write(r["stdout"])
        sys.stdout.flush()
        sys.stderr.write(r["stderr"])
    raise SystemExit(int(r["exitcode"]))
