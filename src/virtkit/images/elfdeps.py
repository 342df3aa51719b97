"""The shared libraries a dynamically linked program needs: its ELF interpreter and the DT_NEEDED closure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import InterpSegment

from virtkit.errors import ImageError


@dataclass(frozen=True)
class ElfInfo:
    interpreter: str | None  # PT_INTERP, e.g. /lib64/ld-linux-x86-64.so.2
    needed: tuple[str, ...]  # DT_NEEDED sonames


def elf_info(path: Path) -> ElfInfo:
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            interp = None
            for seg in elf.iter_segments():
                if isinstance(seg, InterpSegment):
                    interp = seg.get_interp_name()
            needed: list[str] = []
            for section in elf.iter_sections():
                if isinstance(section, DynamicSection):
                    needed += [
                        str(getattr(t, "needed", "")) for t in section.iter_tags() if t.entry.d_tag == "DT_NEEDED"
                    ]
            return ElfInfo(interp, tuple(needed))
    except (ELFError, OSError) as exc:
        raise ImageError(f"cannot read ELF file {path}: {exc}") from exc


def _resolve_in(root: Path, path: str) -> Path:
    """*path* as seen inside *root*: follows symlinks, absolute ones relative to *root*."""
    current = root / path.lstrip("/")
    for _ in range(40):
        if not current.is_symlink():
            return current
        target = current.readlink()
        current = root / str(target).lstrip("/") if target.is_absolute() else current.parent / target
    raise ImageError(f"symlink loop at {path} under {root}")


@dataclass(frozen=True)
class Library:
    soname: str  # the name the loader looks for (or the interpreter's path)
    source: Path  # the real file, symlinks resolved


def closure(binaries: Iterable[Path], root: Path, libdirs: Sequence[str]) -> list[Library]:
    """Every library *binaries* load, transitively, found under *root* in *libdirs* (in search order).

    The interpreter is returned with its absolute path as ``soname``. A soname found nowhere is an
    ImageError naming who needs it: a missing package, caught at build time instead of at guest boot.
    """
    found: dict[str, Library] = {}
    queue: list[tuple[Path, str]] = [(b, b.name) for b in binaries]
    while queue:
        path, who = queue.pop(0)
        info = elf_info(path)
        if info.interpreter and info.interpreter not in found:
            interp = _resolve_in(root, info.interpreter)
            if not interp.is_file():
                raise ImageError(f"ELF interpreter {info.interpreter} of {who} not in the unpacked packages")
            found[info.interpreter] = Library(info.interpreter, interp)
        for soname in info.needed:
            if soname in found:
                continue
            for d in libdirs:
                candidate = _resolve_in(root, f"{d}/{soname}")
                if candidate.is_file():
                    found[soname] = Library(soname, candidate)
                    queue.append((candidate, soname))
                    break
            else:
                raise ImageError(
                    f"shared library {soname} (needed by {who}) not in the unpacked packages",
                    hint="the package that ships it is missing from the image's package list",
                )
    return list(found.values())
