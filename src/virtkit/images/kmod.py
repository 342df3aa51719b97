"""Kernel modules: who needs whom, and the order insmod must load them in.

Debian's kernel package ships no modules.dep (depmod runs at install time), so the graph is read from each
module's ``.modinfo`` section (``depends=a,b``) with pyelftools; a modules.dep, when there is one, gives
the same graph.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.elffile import ELFFile

from virtkit.errors import ImageError


def module_name(path: str | Path) -> str:
    """``kernel/drivers/char/hw_random/virtio-rng.ko`` -> ``virtio_rng`` (the kernel treats - and _ alike)."""
    name = Path(path).name
    for suffix in (".xz", ".zst", ".gz"):
        name = name.removesuffix(suffix)
    return name.removesuffix(".ko").replace("-", "_")


@dataclass(frozen=True)
class Module:
    name: str
    path: str  # relative to lib/modules/<version>/
    depends: tuple[str, ...]


def parse_modules_dep(text: str) -> dict[str, Module]:
    """Parse depmod's ``modules.dep``: ``kernel/a.ko: kernel/b.ko kernel/c.ko`` per line."""
    graph: dict[str, Module] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        path, sep, deps = line.partition(":")
        if not sep:
            raise ImageError(f"modules.dep line {lineno} has no ':': {line!r}")
        path = path.strip()
        name = module_name(path)
        graph[name] = Module(name, path, tuple(module_name(d) for d in deps.split()))
    return graph


def modinfo(path: Path) -> dict[str, str]:
    """The ``key=value`` strings of a module's ``.modinfo`` section (first value per key)."""
    with open(path, "rb") as f:
        section = ELFFile(f).get_section_by_name(".modinfo")
        if section is None:
            raise ImageError(f"{path} has no .modinfo section; not a kernel module")
        data = section.data()
    info: dict[str, str] = {}
    for item in data.split(b"\0"):
        key, sep, value = item.decode(errors="replace").partition("=")
        if sep and key not in info:
            info[key] = value
    return info


def scan_modules(moddir: Path) -> dict[str, Module]:
    """Build the graph from the modules under *moddir* (``lib/modules/<version>``).

    Dependencies are read lazily only for the modules a caller asks about; the path index is cheap.
    """
    modules_dep = moddir / "modules.dep"
    if modules_dep.is_file():
        return parse_modules_dep(modules_dep.read_text())
    return _LazyGraph(moddir)


class _LazyGraph(dict[str, Module]):
    """A name -> Module mapping that reads .modinfo only when a module is looked up."""

    def __init__(self, moddir: Path) -> None:
        super().__init__()
        self._moddir = moddir
        self._paths = {module_name(p): p.relative_to(moddir).as_posix() for p in moddir.rglob("*.ko")}

    def __contains__(self, name: object) -> bool:
        return name in self._paths

    def __missing__(self, name: str) -> Module:
        rel = self._paths[name]  # KeyError for unknown names, like a dict
        deps = modinfo(self._moddir / rel).get("depends", "")
        mod = Module(name, rel, tuple(d.replace("-", "_") for d in deps.split(",") if d))
        self[name] = mod
        return mod


def builtin_modules(moddir: Path) -> frozenset[str]:
    """Names of the modules compiled into the kernel (``modules.builtin``): nothing to load for those."""
    try:
        return frozenset(module_name(line) for line in (moddir / "modules.builtin").read_text().split())
    except OSError:
        return frozenset()


def load_order(graph: Mapping[str, Module], wanted: Iterable[str], builtin: Collection[str] = ()) -> list[Module]:
    """The wanted modules plus everything they depend on, each after its dependencies.

    Built-in modules are skipped: another kernel may compile in what this one ships as a module.
    """
    order: list[Module] = []
    done: set[str] = set()
    visiting: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in done or name in builtin:
            return
        if name in visiting:
            raise ImageError(f"module dependency cycle: {' -> '.join((*chain, name))}")
        if name not in graph:
            via = f" (needed by {chain[-1]})" if chain else ""
            raise ImageError(
                f"kernel module {name!r} not found{via}",
                hint="this kernel lacks it or builds it in; pick another kernel package",
            )
        visiting.add(name)
        mod = graph[name]
        for dep in mod.depends:
            visit(dep, (*chain, name))
        visiting.discard(name)
        done.add(name)
        order.append(mod)

    for name in wanted:
        visit(name.replace("-", "_"), ())
    return order
