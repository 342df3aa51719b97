"""Where the serial console goes: a log file plus any number of live listeners (terminal, sockets)."""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

# A guest may print forever: the log stops growing here (live listeners still see everything).
MAX_LOG_BYTES = 64 << 20
TRUNCATED = b"\n[virtkit: console log truncated here; attach to the console socket for more]\n"


class ConsoleSink:
    def __init__(self, log: Path | None = None, max_log_bytes: int = MAX_LOG_BYTES) -> None:
        self._max_log_bytes = max_log_bytes
        self._logged = 0
        self._lock = threading.Lock()
        self._fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640) if log else -1
        self._listeners: list[Callable[[bytes], None]] = []
        self.bytes_written = 0
        self.first_byte = threading.Event()
        self.first_byte_at: float | None = None  # time.monotonic() of the guest's first byte

    def add_listener(self, listener: Callable[[bytes], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[bytes], None]) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def write(self, data: bytes) -> None:
        with self._lock:
            self.bytes_written += len(data)
            if self.first_byte_at is None:
                self.first_byte_at = time.monotonic()
                self.first_byte.set()
            if self._fd >= 0 and self._logged < self._max_log_bytes:
                chunk = data[: self._max_log_bytes - self._logged]
                self._logged += len(chunk)
                if self._logged >= self._max_log_bytes:
                    chunk += TRUNCATED
                os.write(self._fd, chunk)
            dead = []
            for listener in self._listeners:
                try:
                    listener(data)
                except Exception:  # a broken listener goes; the guest's output and the others carry on
                    dead.append(listener)
            for listener in dead:
                self._listeners.remove(listener)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class StreamWriter:
    """Copies console output to a file descriptor (a terminal, a pipe) from its own thread, so a reader that
    stops reading can never block a vCPU: past ``max_pending`` chunks, output for this stream is dropped."""

    def __init__(self, fd: int, max_pending: int = 4096) -> None:
        self._fd = fd
        self._queue: queue.Queue[bytes | None] = queue.Queue(max_pending)
        self.dropped = 0
        self._thread = threading.Thread(target=self._drain, name=f"console-fd{fd}", daemon=True)
        self._thread.start()

    def __call__(self, data: bytes) -> None:
        try:
            self._queue.put_nowait(data)
        except queue.Full:
            self.dropped += len(data)

    def _drain(self) -> None:
        while (data := self._queue.get()) is not None:
            try:
                while data:
                    data = data[os.write(self._fd, data) :]
            except OSError:
                return  # the reader went away: nothing more to do

    def close(self, timeout: float = 2.0) -> None:
        """Flush what is queued (waiting at most ``timeout`` for a slow reader)."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
