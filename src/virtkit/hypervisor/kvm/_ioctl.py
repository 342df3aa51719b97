"""ioctl helpers: buffers through ``fcntl.ioctl``, unsigned-long arguments through libc (``fcntl`` takes a C int)."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os

from virtkit.hypervisor.base import HypervisorError

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong]
_libc.ioctl.restype = ctypes.c_int


def ioctl_int(fd: int, request: int, arg: int = 0, what: str = "ioctl") -> int:
    ret: int = _libc.ioctl(fd, request, arg)
    if ret < 0:
        err = ctypes.get_errno()
        raise HypervisorError(f"{what} failed: {os.strerror(err)} (errno {errno.errorcode.get(err, err)})")
    return ret


def ioctl_buf(fd: int, request: int, buf: ctypes.Structure, what: str = "ioctl") -> int:
    try:
        ret: int = fcntl.ioctl(fd, request, buf, True)
    except OSError as e:
        raise HypervisorError(f"{what} failed: {e.strerror} (errno {errno.errorcode.get(e.errno or 0)})") from e
    return ret
