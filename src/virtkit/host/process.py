"""What every child process virtkit starts needs: a tie to its parent's life, and the package on its path."""

from __future__ import annotations

import ctypes
import os
import signal
from pathlib import Path

import virtkit

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies (call it in the child, e.g. as
    ``preexec_fn``): a VM's engine never outlives the process that supervises it."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def python_child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: ours) with this virtkit's source tree first on PYTHONPATH, so that a
    ``python -m virtkit...`` child imports the same code even when virtkit is not installed."""
    out = dict(os.environ if env is None else env)
    src = str(Path(virtkit.__file__).resolve().parent.parent)
    paths = [p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p]
    if src not in paths:
        out["PYTHONPATH"] = os.pathsep.join([src, *paths])
    return out
