"""Debian packages through apt's own tools: resolve exact versions, download into a cache, unpack.

Resolution reads only apt's local lists (no network); it is memoised on the lists' mtimes because
apt-cache takes over a second per call on hosts without a pkgcache.bin.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from virtkit.errors import HostError, ImageError
from virtkit.fsutil import write_atomic


@dataclass(frozen=True)
class Package:
    """One .deb at an exact version, as ``apt-get download --print-uris`` names it."""

    name: str
    version: str
    filename: str
    size: int
    sha256: str
    url: str


class PackageNotFound(ImageError):
    def __init__(self, name: str) -> None:
        super().__init__(f"package {name!r} not found", hint="check the name with apt-cache search; run apt-get update")
        self.name = name


def _run(argv: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            list(argv), cwd=cwd, capture_output=True, text=True, check=False, env={**os.environ, "LC_ALL": "C"}
        )
    except FileNotFoundError as exc:
        raise HostError(
            f"{argv[0]} not found: building images needs apt (a Debian host)",
            hint="run on Debian/Ubuntu, or copy a built image into the image cache",
        ) from exc


_DEPENDS_FLAGS = ("--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances")


def _missing_name(stderr: str, names: Iterable[str]) -> str | None:
    for name in names:
        if name in stderr:
            return name
    return None


def depends(name: str, *, recurse: bool = False) -> list[str]:
    """Packages *name* depends on (candidate version; virtual names skipped); with *recurse*, the closure.

    Pre-Depends are left out: they are tools dpkg needs to install a package, not what it runs with.
    """
    argv = ["apt-cache", "depends", *_DEPENDS_FLAGS, "--no-pre-depends"]
    if recurse:
        argv.append("--recurse")
    proc = _run([*argv, name])
    if proc.returncode != 0 or not proc.stdout.strip():
        raise PackageNotFound(name)
    if recurse:
        lines = [ln for ln in proc.stdout.splitlines() if ln and not ln.startswith(" ")]
        return [ln for ln in dict.fromkeys(lines) if not ln.startswith("<") and ln != name]
    out = []
    for ln in proc.stdout.splitlines():
        key, _, dep = ln.strip().partition(": ")
        if key.lstrip("|") == "Depends" and not dep.startswith("<"):
            out.append(dep)
    return out


def print_uris(names: Sequence[str]) -> list[Package]:
    """Exact candidate versions, file names, sizes and SHA256 of *names*, from the local lists."""
    proc = _run(["apt-get", "download", "--print-uris", *names])
    if proc.returncode != 0:
        raise PackageNotFound(_missing_name(proc.stderr, names) or ", ".join(names))
    pkgs = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) != 4 or not parts[3].startswith("SHA256:"):
            continue
        url, filename = parts[0].strip("'"), parts[1]
        name, version, _arch = urllib.parse.unquote(filename).removesuffix(".deb").split("_")
        pkgs.append(Package(name, version, filename, int(parts[2]), parts[3].removeprefix("SHA256:"), url))
    got = {p.name for p in pkgs}
    for name in names:
        if name not in got:
            raise PackageNotFound(name)
    return pkgs


def apt_update() -> None:
    proc = _run(["apt-get", "update"])
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise HostError(f"apt-get update failed: {last}", hint="check the network and /etc/apt/sources.list")


def lists_stamp() -> str:
    """Changes whenever apt's view of available packages may have changed."""
    parts = []
    for d in (Path("/var/lib/apt/lists"), Path("/etc/apt")):
        if d.is_dir():
            for p in sorted(d.rglob("*")):
                if p.is_file():
                    st = p.stat()
                    parts.append(f"{p}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def memoised(memo_file: Path, key: str, compute: Callable[[], list[Package]]) -> list[Package]:
    """*compute()* unless *memo_file* holds a result for *key* made from the same apt lists."""
    stamp = lists_stamp()
    try:
        memo = json.loads(memo_file.read_text())
        entry = memo.get(key)
        if entry and entry["stamp"] == stamp:
            return [Package(**p) for p in entry["packages"]]
    except (OSError, ValueError, KeyError, TypeError):
        memo = {}
    pkgs = compute()
    memo = memo if isinstance(memo, dict) else {}
    memo[key] = {"stamp": stamp, "packages": [asdict(p) for p in pkgs]}
    write_atomic(memo_file, json.dumps(memo, indent=1))
    return pkgs


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def cached_deb(pkg: Package, deb_dir: Path) -> Path | None:
    """The cached .deb for *pkg* if it is whole (size and SHA256 match), else None."""
    path = deb_dir / pkg.filename
    try:
        if path.stat().st_size == pkg.size and sha256_file(path) == pkg.sha256:
            return path
    except OSError:
        pass
    return None


def download(pkgs: Sequence[Package], deb_dir: Path, on_bytes: Callable[[int], None] | None = None) -> list[Path]:
    """Fetch *pkgs* with ``apt-get download`` into *deb_dir*, verified against the lists; cached ones are kept.

    One apt-get call for all of them: each start of apt reads all its lists (over a second here).
    ``on_bytes`` is told how many bytes of the missing packages have arrived so far.
    """
    missing = [p for p in pkgs if cached_deb(p, deb_dir) is None]
    if missing:
        deb_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=deb_dir, prefix=".dl-") as tmp:
            _fetch(missing, Path(tmp), on_bytes)
            for pkg in missing:
                got = Path(tmp) / pkg.filename
                if got.stat().st_size != pkg.size or sha256_file(got) != pkg.sha256:
                    raise ImageError(
                        f"downloaded {pkg.filename} does not match the SHA256 in apt's lists",
                        hint="run apt-get update and build again",
                    )
                os.chmod(got, 0o644)
                got.replace(deb_dir / pkg.filename)
    return [deb_dir / p.filename for p in pkgs]


def _fetch(pkgs: Sequence[Package], tmp: Path, on_bytes: Callable[[int], None] | None) -> None:
    if os.geteuid() == 0:
        # apt drops to _apt for downloads; give it the directory so it need not warn and run unsandboxed.
        with contextlib.suppress(KeyError):
            os.chown(tmp, pwd.getpwnam("_apt").pw_uid, -1)
    argv = ["apt-get", "download", *(f"{p.name}={p.version}" for p in pkgs)]
    with open(tmp / ".stderr", "w+") as err:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=tmp,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env={**os.environ, "LC_ALL": "C"},
            )
        except FileNotFoundError as exc:
            raise HostError("apt-get not found: building images needs apt (a Debian host)") from exc
        try:
            while proc.poll() is None:
                if on_bytes is not None:
                    on_bytes(sum(f.stat().st_size for f in tmp.glob("*.deb") if f.is_file()))
                time.sleep(0.2)
        finally:
            if proc.poll() is None:  # interrupted: stop apt before the directory goes away
                proc.kill()
                proc.wait()
        err.seek(0)
        lines = err.read().strip().splitlines()
    absent = [p for p in pkgs if not (tmp / p.filename).is_file()]
    if proc.returncode != 0 or absent:
        what = absent[0].name if absent else pkgs[0].name
        raise ImageError(
            f"downloading {what} failed: {(lines or ['no output'])[-1]}",
            hint="check the network and apt sources (apt-get update)",
        )


def unpack(deb: Path, dest: Path) -> None:
    proc = _run(["dpkg-deb", "-x", str(deb), str(dest)])
    if proc.returncode != 0:
        raise ImageError(
            f"unpacking {deb.name} failed: {proc.stderr.strip()}", hint=f"delete {deb} so that it is downloaded again"
        )
