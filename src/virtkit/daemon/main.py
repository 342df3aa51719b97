"""virtkitd: the virtkit management daemon.

One per host. It owns the state (SQLite under the state directory), supervises one process per VM, and
serves the REST API on a unix socket (and, with --tcp, on TCP with a bearer token). Killing or restarting it
leaves the VMs running; the next virtkitd re-attaches to them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import grp
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from virtkit import __version__
from virtkit.config import defaults
from virtkit.errors import ConfigError, VirtkitError
from virtkit.spec.resolve import ImageResolver, build_boot_image

log = logging.getLogger("virtkitd")


def default_socket() -> Path:
    env = os.environ.get("VIRTKIT_SOCKET")
    return Path(env) if env else defaults.state_dir() / "virtkitd.sock"


def bind_unix(path: Path, group: str | None, mode: int) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a stale socket from a killed daemon (we hold the lock, so nobody else serves it)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # bind with a umask so the socket never exists with looser permissions than asked for
    old = os.umask(0o777 & ~mode)
    try:
        s.bind(str(path))
    finally:
        os.umask(old)
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError as e:
            raise ConfigError(
                f"group {group!r} does not exist", hint="create it with groupadd, or drop --socket-group"
            ) from e
        os.chown(path, -1, gid)
    os.chmod(path, mode)
    s.listen(512)
    s.setblocking(False)
    return s


def bind_tcp(spec: str) -> socket.socket:
    host, _, port = spec.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (ValueError, OSError) as e:
        raise ConfigError(f"--tcp {spec!r} is not HOST:PORT", hint="e.g. --tcp 127.0.0.1:8765") from e
    fam, _, _, _, addr = infos[0]
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(addr)
    s.listen(512)
    s.setblocking(False)
    return s


def load_token(path: Path | None) -> str | None:
    if path is None:
        return None
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    token = path.read_text().strip()
    if len(token) < 16:
        raise ConfigError(f"the token in {path} is shorter than 16 characters", hint="use a long random token")
    return token


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="virtkitd", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--version", action="version", version=f"virtkitd {__version__}")
    ap.add_argument("--home", type=Path, help="state directory (default: $VIRTKIT_HOME, /var/lib/virtkit as root)")
    ap.add_argument("--socket", type=Path, help="unix socket path (default: <home>/virtkitd.sock)")
    ap.add_argument("--socket-group", help="group allowed to use the unix socket (mode 0660); default root only")
    ap.add_argument(
        "--socket-mode",
        type=lambda s: int(s, 8),
        default=None,
        help="octal mode of the unix socket (default 0600, or 0660 with --socket-group)",
    )
    ap.add_argument("--tcp", metavar="HOST:PORT", help="also serve the API on TCP (needs a token)")
    ap.add_argument(
        "--token-file",
        type=Path,
        help="bearer token for TCP clients (created with a random token if missing; "
        "default <home>/api-token when --tcp is given)",
    )
    ap.add_argument("--no-autostart", action="store_true", help="do not start autostart domains")
    ap.add_argument("--no-cgroups", action="store_true", help="do not put VMs in cgroups")
    ap.add_argument(
        "--no-networks",
        action="store_true",
        help="leave host networks alone: no autostart of networks, only 'user' NICs",
    )
    ap.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return ap


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn re-raises SIGTERM after its shutdown, which kills the process before our clean-up; the
        daemon handles the signals itself and exits 0."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server


async def serve(
    args: argparse.Namespace, engine_factory: str | None = None, images: ImageResolver = build_boot_image
) -> None:
    """Serve until SIGTERM/SIGINT. ``engine_factory`` ("module:callable") and ``images`` replace the real
    engines and image builder: the tests' entry point (tests/support/fake_daemon.py) passes fakes; virtkitd
    itself never does."""
    import uvicorn

    _Server = _server_class()

    from virtkit.daemon.api import create_app, wrap
    from virtkit.daemon.service import Service
    from virtkit.daemon.supervisors import DEFAULT_ENGINE_FACTORY

    home: Path = args.home or defaults.state_dir()
    home.mkdir(parents=True, exist_ok=True)
    lock = open(home / "virtkitd.lock", "w")  # noqa: SIM115 - held for the daemon's lifetime
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
        raise ConfigError(f"another virtkitd already serves {home}", hint="use that one, or stop it first") from e
    lock.write(str(os.getpid()))
    lock.flush()

    networks = None
    if not args.no_networks:
        from virtkit.network.manager import NetworkManager

        networks = NetworkManager()
    service = Service(
        home,
        engine_factory=engine_factory or DEFAULT_ENGINE_FACTORY,
        use_cgroups=False if args.no_cgroups else None,
        networks=networks,
        images=images,
    )
    # off the event loop: pyroute2 (networks' autostart) goes async when it finds a running loop in its thread
    await asyncio.to_thread(service.recover, autostart=not args.no_autostart)
    token = None
    sock_path: Path = args.socket or (home / "virtkitd.sock")
    sockets = [
        bind_unix(
            sock_path,
            args.socket_group,
            args.socket_mode if args.socket_mode is not None else (0o660 if args.socket_group else 0o600),
        )
    ]
    if args.tcp:
        token = load_token(args.token_file or home / "api-token")
        sockets.append(bind_tcp(args.tcp))
    app = wrap(create_app(service, token, networks), token)
    config = uvicorn.Config(
        app,
        log_level=args.log_level,
        access_log=args.log_level == "debug",
        timeout_graceful_shutdown=2,
        ws="websockets-sansio",
    )
    server = _Server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    log.info("virtkitd %s serving %s", __version__, ", ".join(str(s.getsockname()) for s in sockets))
    try:
        await server.serve(sockets=sockets)
    finally:
        with contextlib.suppress(FileNotFoundError):
            sock_path.unlink()  # we hold the lock, so the socket is ours


def main(
    argv: list[str] | None = None, engine_factory: str | None = None, images: ImageResolver = build_boot_image
) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="virtkitd: %(levelname)s %(message)s")
    try:
        asyncio.run(serve(args, engine_factory, images))
    except VirtkitError as e:
        print(f"virtkitd: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
