"""Build the test kernels with the host gcc into tests/guests/build/ (on demand, only when sources changed).

``python tests/guests/guestkernels.py`` builds them by hand; tests use the ``test_kernels`` fixture.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD = HERE / "build"
CFLAGS = [
    "-m64", "-O2", "-ffreestanding", "-nostdlib", "-fno-pic", "-fno-pie", "-no-pie", "-static",
    "-mno-red-zone", "-mgeneral-regs-only", "-mno-sse", "-fno-stack-protector", "-fcf-protection=none",
    "-fno-asynchronous-unwind-tables", "-Wall", "-Werror", "-Wl,--build-id=none", "-Wl,-z,noexecstack",
    "-Wl,--no-warn-rwx-segments",
]  # fmt: skip
SOURCES = ["kernel.c", "trampoline.S", "isr.S"]

XLF_KERNEL_64 = 0x1


def make_bzimage(
    payload: bytes,
    *,
    init_size: int = 0,
    version: int = 0x020F,
    xloadflags: int = XLF_KERNEL_64,
    cmdline_size: int = 2047,
    setup_sects: int = 4,
    initrd_addr_max: int = 0x7FFFFFFF,
) -> bytes:
    """Wrap a flat protected-mode kernel (linked at 0x100000, startup_64 at +0x200) in a bzImage setup header."""
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    struct.pack_into("<I", setup, 0x1F4, (len(payload) + 15) // 16)  # syssize
    struct.pack_into("<H", setup, 0x1FE, 0xAA55)
    setup[0x200:0x202] = bytes([0xEB, 0x66])  # jmp to 0x268: the header is 0x66 bytes past 0x202
    struct.pack_into("<IH", setup, 0x202, 0x53726448, version)
    setup[0x211] = 0x01  # LOADED_HIGH
    struct.pack_into("<I", setup, 0x214, 0x100000)  # code32_start
    struct.pack_into("<I", setup, 0x22C, initrd_addr_max)
    struct.pack_into("<I", setup, 0x230, 0x200000)  # kernel_alignment
    struct.pack_into("<H", setup, 0x236, xloadflags)
    struct.pack_into("<I", setup, 0x238, cmdline_size)
    struct.pack_into("<Q", setup, 0x258, 0x100000)  # pref_address
    struct.pack_into("<I", setup, 0x260, init_size)
    return bytes(setup) + payload


def make_pvh_elf(
    code: bytes, *, load: int = 0x100000, entry: int | None = None, bss: int = 0, note: bool = True, desc_size: int = 8
) -> bytes:
    """A minimal ELF64 executable: one PT_LOAD with ``code`` at ``load`` and (optionally) the PVH entry note."""
    entry = load if entry is None else entry
    phnum = 2 if note else 1
    header = struct.pack("<4sBBBBB7sHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, bytes(7), 2, 0x3E, 1, entry, 64, 0,
                         0, 64, 56, phnum, 64, 0, 0)  # fmt: skip
    desc = struct.pack("<Q" if desc_size == 8 else "<I", entry)
    note_bytes = struct.pack("<III4s", 4, len(desc), 18, b"Xen\0") + desc
    note_offset = 64 + 56 * phnum
    code_offset = 0x100
    load_ph = struct.pack("<IIQQQQQQ", 1, 7, code_offset, load, load, len(code), len(code) + bss, 0x1000)
    phdrs = load_ph + (struct.pack("<IIQQQQQQ", 4, 4, note_offset, 0, 0, len(note_bytes), len(note_bytes), 4)
                       if note else b"")  # fmt: skip
    body = (header + phdrs + (note_bytes if note else b"")).ljust(code_offset, b"\0")
    return body + code


def _stale(target: Path, sources: list[Path]) -> bool:
    return not target.exists() or any(s.stat().st_mtime > target.stat().st_mtime for s in sources)


def build(out: Path = BUILD) -> dict[str, Path]:
    """Returns {"bzimage": ..., "bzimage32": ..., "pvh": ...}."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("gcc is needed to build the test kernels (apt-get install gcc)")
    out.mkdir(parents=True, exist_ok=True)
    common = [HERE / s for s in SOURCES]
    deps = [*common, HERE / "boot64.S", HERE / "pvh.S", HERE / "bzimage.ld", HERE / "pvh.ld", Path(__file__)]
    result = {"bzimage": out / "bzImage", "bzimage32": out / "bzImage32", "pvh": out / "vmlinux-pvh"}
    if not any(_stale(p, deps) for p in result.values()):
        return result
    elf = out / "bzimage.elf"
    subprocess.run([gcc, *CFLAGS, "-T", str(HERE / "bzimage.ld"), "-o", str(elf), str(HERE / "boot64.S"),
                    *map(str, common)], check=True)  # fmt: skip
    flat = out / "bzimage.bin"
    subprocess.run(["objcopy", "-O", "binary", str(elf), str(flat)], check=True)
    symbols = subprocess.run(["nm", str(elf)], check=True, capture_output=True, text=True).stdout
    end = next(int(f[0], 16) for f in map(str.split, symbols.splitlines()) if f[-1:] == ["_end"])
    payload = flat.read_bytes()
    init_size = end - 0x100000
    result["bzimage"].write_bytes(make_bzimage(payload, init_size=init_size))
    result["bzimage32"].write_bytes(make_bzimage(payload, init_size=init_size, xloadflags=0))
    subprocess.run([gcc, *CFLAGS, "-T", str(HERE / "pvh.ld"), "-o", str(result["pvh"]), str(HERE / "pvh.S"),
                    *map(str, common)], check=True)  # fmt: skip
    return result


if __name__ == "__main__":
    for name, path in build().items():
        print(f"{name}: {path} ({path.stat().st_size} bytes)")
    sys.exit(0)
