from __future__ import annotations

import os
import subprocess
import time

from virtkit.daemon import procinfo


def test_a_live_process_is_read_and_a_reaped_one_is_gone() -> None:
    me = os.getpid()
    assert procinfo.pid_alive(me)
    assert (procinfo.cpu_time_ns(me) or 0) > 0
    assert (procinfo.resident_bytes(me) or 0) > 1 << 20
    p = subprocess.Popen(["true"])
    p.wait()
    assert not procinfo.pid_alive(p.pid)
    assert procinfo.cpu_time_ns(p.pid) is None and procinfo.resident_bytes(p.pid) is None


def test_a_zombie_is_not_alive() -> None:
    p = subprocess.Popen(["true"])
    try:
        for _ in range(200):  # exited but not yet waited for: a zombie
            with open(f"/proc/{p.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.01)
        assert not procinfo.pid_alive(p.pid)
    finally:
        p.wait()
