"""Unwrap a bzImage into the ELF vmlinux inside it, to boot L1 through PVH instead of the decompressor.

Under TCG the bzImage's own decompressor is the slowest part of L1's boot (~6 s of ~12 here); QEMU's
``-kernel`` loads an ELF with a Xen PVH entry note directly, so the payload is decompressed once, at build time.
The boot header is read by the native engine's own parser (:mod:`virtkit.arch.x86_64.bzimage`).
"""

from __future__ import annotations

import lzma
import shutil
import subprocess
import zlib

from virtkit.arch.x86_64.bzimage import parse_bzimage
from virtkit.errors import ImageError


def _external(tool: str, args: list[str], data: bytes) -> bytes:
    if shutil.which(tool) is None:
        raise ImageError(f"the kernel payload needs {tool} to decompress", hint=f"apt-get install {tool}")
    return subprocess.run([tool, *args], input=data, capture_output=True, check=True).stdout


def vmlinux(bz: bytes) -> bytes:
    """Decompress the bzImage payload; returns the ELF vmlinux."""
    image = parse_bzimage(bz, "the bzImage")
    data = image.compressed_kernel
    if not data:
        raise ImageError(f"bzImage boot protocol {image.version:#x} is too old to locate the payload")
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
