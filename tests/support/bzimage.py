"""Unwrap a bzImage into the ELF vmlinux inside it, to boot L1 through PVH instead of the decompressor.

Under TCG the bzImage's own decompressor is the slowest part of L1's boot (~6 s of ~12 here); QEMU's
``-kernel`` loads an ELF with a Xen PVH entry note directly, so the payload is decompressed once, at build time.
"""

from __future__ import annotations

import io
import lzma
import shutil
import struct
import subprocess
import zlib

from elftools.elf.elffile import ELFFile
from elftools.elf.segments import NoteSegment

from virtkit.errors import ImageError

_XEN_ELFNOTE_PHYS32_ENTRY = 18


def payload(bz: bytes) -> bytes:
    """The compressed kernel inside a bzImage (boot protocol >= 2.08: payload_offset/length)."""
    if len(bz) < 0x250 or bz[0x202:0x206] != b"HdrS":
        raise ImageError("not a bzImage (no HdrS boot header)")
    version = struct.unpack_from("<H", bz, 0x206)[0]
    if version < 0x208:
        raise ImageError(f"bzImage boot protocol {version:#x} is too old to locate the payload")
    setup_sects = bz[0x1F1] or 4
    offset, length = struct.unpack_from("<II", bz, 0x248)
    start = (setup_sects + 1) * 512 + offset
    return bz[start : start + length]


def _external(tool: str, args: list[str], data: bytes) -> bytes:
    if shutil.which(tool) is None:
        raise ImageError(f"the kernel payload needs {tool} to decompress", hint=f"apt-get install {tool}")
    return subprocess.run([tool, *args], input=data, capture_output=True, check=True).stdout


def vmlinux(bz: bytes) -> bytes:
    """Decompress the bzImage payload; returns the ELF vmlinux."""
    data = payload(bz)
    body = data[:-4]  # the kernel build appends the decompressed size (le32); stream decoders stop before it
    if data.startswith(b"\xfd7zXZ\x00"):
        out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data)
    elif data.startswith(b"\x1f\x8b"):
        out = zlib.decompressobj(wbits=31).decompress(data)
    elif data.startswith(b"\x28\xb5\x2f\xfd"):
        out = _external("zstd", ["-dc"], body)
    elif data.startswith(b"\x02\x21\x4c\x18"):
        out = _external("lz4", ["-dc"], body)
    else:
        raise ImageError(f"unknown bzImage payload compression (magic {data[:4].hex()})")
    if not out.startswith(b"\x7fELF"):
        raise ImageError("the bzImage payload is not an ELF vmlinux")
    return out


def has_pvh_entry(elf: bytes) -> bool:
    """True when the ELF carries XEN_ELFNOTE_PHYS32_ENTRY, which QEMU's -kernel uses to boot it via PVH."""
    f = ELFFile(io.BytesIO(elf))
    for seg in f.iter_segments():
        if not isinstance(seg, NoteSegment):
            continue
        for note in seg.iter_notes():
            n_type: object = note["n_type"]  # an int for Xen notes; pyelftools names only GNU ones
            if note["n_name"] == "Xen" and n_type == _XEN_ELFNOTE_PHYS32_ENTRY:
                return True
    return False
