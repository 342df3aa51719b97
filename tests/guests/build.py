"""Build the test kernels with the host gcc into tests/guests/build/ (on demand, only when sources changed).

``python tests/guests/build.py`` builds them by hand; tests use the ``test_kernels`` fixture.
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


def make_bzimage(payload: bytes, *, init_size: int = 0, version: int = 0x020F, xloadflags: int = XLF_KERNEL_64,
                 cmdline_size: int = 2047, setup_sects: int = 4, initrd_addr_max: int = 0x7FFFFFFF) -> bytes:
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
