"""``virtkit``'s entry point: the command tree (:mod:`virtkit.cli.app`), or a fast path for the hot verbs.

Building typer's tree and parsing with it costs ~50 ms before a command runs (typer 0.2x checks every value
with pydantic), more than a ``virsh list`` takes in all. For ``--version`` and the plainest forms of the verbs
typed most often (``list [--all] [--json]``, ``dominfo VM [--json]``, ``start VM... [--json]``,
``exec VM [--json] -- CMD...``) this module calls the same functions typer would (:mod:`virtkit.cli.hot`)
without importing typer; any other word, option or form (``--help`` included) goes to typer, so help, errors
and every other option behave as the tree says. tests/unit/cli/test_main.py checks both paths agree.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

HOT_FLAGS = {"list": {"--all", "--json"}, "dominfo": {"--json"}, "start": {"--json"}, "exec": {"--json"}}


def fast_path(argv: Sequence[str]) -> Callable[[], None] | None:
    """What to run for ``argv`` without typer, or None when typer must parse it."""
    from virtkit import __version__

    if list(argv) == ["--version"]:
        from virtkit.cli import output

        return lambda: output.line(__version__)
    if not argv or argv[0] not in HOT_FLAGS:
        return None
    verb, rest = argv[0], list(argv[1:])
    command: list[str] = []
    if verb == "exec":
        if "--" not in rest:
            return None
        cut = rest.index("--")
        rest, command = rest[:cut], rest[cut + 1 :]
    flags = [w for w in rest if w.startswith("-")]
    words = [w for w in rest if not w.startswith("-")]
    if len(set(flags)) != len(flags) or not set(flags) <= HOT_FLAGS[verb]:
        return None
    as_json = "--json" in flags
    from virtkit.cli import hot

    if verb == "list" and not words:
        return lambda: hot.list_domains("--all" in flags, as_json)
    if verb == "dominfo" and len(words) == 1:
        return lambda: hot.dominfo(words[0], as_json)
    if verb == "start" and words:
        return lambda: hot.lifecycle("start", words, as_json)
    if verb == "exec" and len(words) == 1 and command:
        return lambda: hot.exec_in(words[0], command, hot.EXEC_TIMEOUT_S, as_json)
    return None


def main() -> None:
    run = fast_path(sys.argv[1:])
    if run is not None:
        run()
        return
    from virtkit.cli import output
    from virtkit.cli.app import app
    from virtkit.errors import VirtkitError

    try:
        app()
    except (VirtkitError, KeyboardInterrupt) as e:  # one raised outside a command's own handling
        sys.exit(output.report(e))


if __name__ == "__main__":
    main()
