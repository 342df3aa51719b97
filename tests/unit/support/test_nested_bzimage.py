from __future__ import annotations

import gzip
import lzma
import struct

import pytest
from tests.support import bzimage

from virtkit.arch.x86_64.bzimage import parse_bzimage
from virtkit.errors import ConfigError, ImageError

ELF = b"\x7fELF" + bytes(range(60))


def fake_bzimage(compressed: bytes, setup_sects: int = 3) -> bytes:
    """A boot sector + setup (setup_sects * 512) then protected-mode code holding the payload at an offset."""
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    struct.pack_into("<H", setup, 0x1FE, 0xAA55)  # boot_flag
    setup[0x201] = 0x66  # the jump at 0x200 skips the header, which so ends at 0x268
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, 0x20F)
    setup[0x211] = 0x01  # LOADED_HIGH: a bzImage
    payload = compressed + struct.pack("<I", len(ELF))  # the build appends the decompressed size
    struct.pack_into("<II", setup, 0x248, 0x40, len(payload))
    return bytes(setup) + b"\x90" * 0x40 + payload + b"\0" * 100


@pytest.mark.parametrize("compress", [lzma.compress, gzip.compress], ids=["xz", "gzip"])
def test_vmlinux_is_unwrapped(compress: object) -> None:
    assert callable(compress)
    assert bzimage.vmlinux(fake_bzimage(compress(ELF))) == ELF


def test_payload_is_located_by_the_boot_header() -> None:
    bz = fake_bzimage(b"PAYLOAD", setup_sects=5)
    assert parse_bzimage(bz).compressed_kernel == b"PAYLOAD" + struct.pack("<I", len(ELF))


def test_not_a_bzimage() -> None:
    with pytest.raises(ConfigError, match="no Linux boot protocol header"):
        bzimage.vmlinux(ELF * 20)


def test_unknown_compression_is_named() -> None:
    with pytest.raises(ImageError, match="unknown bzImage payload compression"):
        bzimage.vmlinux(fake_bzimage(b"\x12\x34\x56\x78junk"))
