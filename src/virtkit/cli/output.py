"""Everything the CLI prints, in one place: lines, aligned tables, key/value blocks, JSON, errors with their fix,
progress, and the exit codes.

Plain writes to stdout/stderr (rich is imported only for progress bars and spinners, which only show on a
terminal): a listing costs no more than the listing. Colour only on a terminal, never with ``NO_COLOR``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from virtkit.errors import ConfigError, GuestTimeout, VirtkitError

if TYPE_CHECKING:
    from rich.console import Console

# -- exit codes: one table for every command (shown in `virtkit --help` and README)
EXIT_OK = 0
EXIT_USAGE = 2  # bad flags, an invalid spec or argument (nothing was done)
EXIT_NOT_FOUND = 3  # no such domain or snapshot
EXIT_CONFLICT = 4  # wrong state or duplicate name (e.g. starting a running domain)
EXIT_UNREACHABLE = 5  # virtkitd does not answer
EXIT_TIMEOUT = 124  # the guest did not become ready in time
EXIT_ERROR = 125  # any other virtkit error (host, engine, image, agent), as `docker run`
EXIT_INTERRUPTED = 130  # Ctrl-C

EXIT_CODES_HELP = (
    "Exit codes: 0 success; `run` and `exec` return the guest command's own code; 2 bad usage or invalid "
    "input (an unknown network name too); 3 no such domain or snapshot; 4 wrong state or duplicate; "
    "5 virtkitd unreachable; 124 guest not ready in time; 125 any other virtkit error (for `run` and `image`, "
    "every error that is not a timeout, as `docker run`); 130 interrupted."
)

_BY_STATUS = {400: EXIT_USAGE, 404: EXIT_NOT_FOUND, 409: EXIT_CONFLICT, 422: EXIT_USAGE, 504: EXIT_TIMEOUT}


def exit_code(e: BaseException) -> int:
    """The exit code for an error that ended a command (see :data:`EXIT_CODES_HELP`)."""
    from virtkit.client import ApiError, DaemonUnreachable

    if isinstance(e, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(e, DaemonUnreachable):
        return EXIT_UNREACHABLE
    if isinstance(e, GuestTimeout):
        return EXIT_TIMEOUT
    if isinstance(e, ApiError):
        return _BY_STATUS.get(e.status, EXIT_ERROR)
    if isinstance(e, ConfigError):
        return EXIT_USAGE
    return EXIT_ERROR


# -- styling
def _styled(stream: Any, text: str, sgr: str) -> str:
    if os.environ.get("NO_COLOR") or not stream.isatty():
        return text
    return f"\x1b[{sgr}m{text}\x1b[0m"


def line(text: str = "") -> None:
    """One line on stdout."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def note(text: str) -> None:
    """One line on stderr (``note: ...``, progress words: what a script reading stdout should not see)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def error(message: str, hint: str | None = None) -> None:
    """``virtkit: error: MESSAGE`` and, where there is one, ``  fix: HINT`` on stderr."""
    note(_styled(sys.stderr, "virtkit: error:", "1;31") + " " + message)
    if hint:
        note(f"  fix: {hint}")


def report(e: BaseException) -> int:
    """Print an error that ended a command (and a timed-out guest's last console lines); its exit code."""
    if isinstance(e, KeyboardInterrupt):
        note("virtkit: interrupted")
    elif isinstance(e, VirtkitError):
        error(e.message, e.hint)
        if isinstance(e, GuestTimeout) and e.console_tail:
            note("  last console lines:")
            for text in e.console_tail.splitlines():
                note(f"    {text}")
    else:
        error(f"{type(e).__name__}: {e}", "this is a virtkit bug; please report it with the command you ran")
    return exit_code(e)


@contextlib.contextmanager
def reported(code: Callable[[BaseException], int] = exit_code) -> Iterator[None]:
    """Turn a virtkit error or Ctrl-C inside the block into its message and exit code (``code`` may remap it).
    It exits with ``SystemExit``, which typer lets through as it is: the same inside and outside typer."""
    try:
        yield
    except (VirtkitError, KeyboardInterrupt) as e:
        report(e)
        raise SystemExit(code(e)) from None


def docker_code(e: BaseException) -> int:
    """`run` and `image`: a timeout is 124, Ctrl-C 130, anything else 125 (as `docker run`)."""
    return exit_code(e) if isinstance(e, GuestTimeout | KeyboardInterrupt) else EXIT_ERROR


# -- data
def print_json(data: Any) -> None:
    """What a script parses: the API's JSON as it came, indented."""
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()


def _cell(v: Any) -> str:
    return "-" if v is None or v == "" else str(v)


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[str] = ()) -> None:
    """An aligned table: a header, then one row per line, columns two spaces apart (``right`` names the
    right-aligned ones). Empty cells print as ``-``."""
    cells = [[_cell(v) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def fmt(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if columns[i] in right else (v.ljust(w) if i < len(values) - 1 else v)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    line(_styled(sys.stdout, fmt(list(columns)), "1"))
    for r in cells:
        line(fmt(r))


def kv(pairs: Sequence[tuple[str, Any]], skip_none: bool = False) -> None:
    """``Label:  value`` lines, values aligned; ``None`` prints as ``-`` (or the line is left out)."""
    if not pairs:
        return
    width = max(len(k) for k, _ in pairs) + 1
    for k, v in pairs:
        if v is None and skip_none:
            continue
        line(f"{k + ':':<{width}} {_cell(v)}")


# -- progress (rich, on a terminal only)
_consoles: tuple[Console, Console] | None = None


def consoles() -> tuple[Console, Console]:
    """rich consoles for stdout and stderr, for the commands that draw progress (made on first use)."""
    global _consoles
    if _consoles is None:
        from rich.console import Console

        _consoles = (Console(), Console(stderr=True, soft_wrap=True))
    return _consoles


@contextlib.contextmanager
def progress(what: str, enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A spinner with elapsed time on stderr for long work; yields a function that changes its words. Hidden
    when not ``enabled`` (``--json``) or when stderr is not a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield lambda s: None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    cols = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*cols, console=consoles()[1], transient=True) as p:
        task = p.add_task(what)
        yield lambda s: p.update(task, description=s)
