"""Linux x86 boot protocol: read a bzImage's setup header (Documentation/arch/x86/boot.rst)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from virtkit.errors import ConfigError

HEADER_START = 0x1F1
HDRS_MAGIC = 0x53726448  # "HdrS"
BOOT_FLAG = 0xAA55
MIN_VERSION = 0x0206  # cmdline_size and a 32-bit entry with boot_params in %esi
XLF_KERNEL_64 = 0x1
XLF_CAN_BE_LOADED_ABOVE_4G = 0x2
LOADED_HIGH = 0x01
CAN_USE_HEAP = 0x80
DEFAULT_CMDLINE_SIZE = 255
LOAD_ADDRESS = 0x100000  # where the protected-mode kernel goes (boot.rst: "at 0x100000")
ENTRY64_OFFSET = 0x200  # startup_64 sits 0x200 past the 32-bit entry


@dataclass(frozen=True)
class BzImage:
    header: bytes  # the setup header, bytes 0x1f1 .. end, as it goes into boot_params
    payload: bytes  # the protected-mode kernel
    version: int
    loadflags: int
    xloadflags: int
    cmdline_size: int
    initrd_addr_max: int
    init_size: int
    relocatable: bool = False
    pref_address: int = LOAD_ADDRESS
    payload_offset: int = 0  # where the compressed vmlinux sits in ``payload`` (boot protocol 2.08+)
    payload_length: int = 0

    @property
    def entry64(self) -> bool:
        return bool(self.xloadflags & XLF_KERNEL_64) and self.version >= 0x020C

    @property
    def memory_end(self) -> int:
        """Where the memory the kernel may use while it starts ends. A relocatable kernel loaded below its
        preferred address decompresses itself to that address (``init_size`` bytes from there)."""
        start = max(LOAD_ADDRESS, self.pref_address) if self.relocatable else LOAD_ADDRESS
        return max(LOAD_ADDRESS + len(self.payload), start + self.init_size)

    @property
    def compressed_kernel(self) -> bytes:
        """The compressed ELF vmlinux that the payload's decompressor unpacks (empty before protocol 2.08)."""
        return self.payload[self.payload_offset : self.payload_offset + self.payload_length]


def looks_like_bzimage(data: bytes) -> bool:
    return len(data) >= 0x206 and struct.unpack_from("<I", data, 0x202)[0] == HDRS_MAGIC


def parse_bzimage(data: bytes, name: str = "kernel") -> BzImage:
    if not looks_like_bzimage(data):
        raise ConfigError(f"{name} has no Linux boot protocol header (no 'HdrS' at 0x202)")
    boot_flag, _jump, _magic, version = struct.unpack_from("<HHIH", data, 0x1FE)
    if boot_flag != BOOT_FLAG:
        raise ConfigError(f"{name}: boot_flag is {boot_flag:#06x}, not 0xaa55; the header is damaged")
    if version < MIN_VERSION:
        raise ConfigError(
            f"{name} speaks boot protocol {version >> 8}.{version & 0xFF:02d}; at least 2.06 is needed",
            hint="use a Linux kernel from 2.6.22 or newer",
        )
    header_end = 0x202 + data[0x201]
    setup_sects = data[HEADER_START] or 4
    payload_start = (setup_sects + 1) * 512
    if header_end > payload_start or payload_start >= len(data):
        raise ConfigError(f"{name} is truncated: the protected-mode kernel would start at {payload_start:#x}")
    loadflags = data[0x211]
    if not loadflags & LOADED_HIGH:
        raise ConfigError(f"{name} is a zImage (loads below 1 MiB); only bzImage kernels are supported")
    initrd_addr_max = struct.unpack_from("<I", data, 0x22C)[0] or 0x37FFFFFF
    xloadflags = struct.unpack_from("<H", data, 0x236)[0] if version >= 0x020C else 0
    cmdline_size = struct.unpack_from("<I", data, 0x238)[0] or DEFAULT_CMDLINE_SIZE
    has_pref = version >= 0x020A and header_end >= 0x264
    init_size = struct.unpack_from("<I", data, 0x260)[0] if has_pref else 0
    pref_address = struct.unpack_from("<Q", data, 0x258)[0] if has_pref else LOAD_ADDRESS
    payload_offset, payload_length = struct.unpack_from("<II", data, 0x248) if version >= 0x0208 else (0, 0)
    return BzImage(
        header=bytes(data[HEADER_START:header_end]),
        payload=bytes(data[payload_start:]),
        version=version,
        loadflags=loadflags,
        xloadflags=xloadflags,
        cmdline_size=cmdline_size,
        initrd_addr_max=initrd_addr_max,
        init_size=init_size,
        relocatable=version >= 0x0205 and bool(data[0x234]),
        pref_address=pref_address,
        payload_offset=payload_offset,
        payload_length=payload_length,
    )
