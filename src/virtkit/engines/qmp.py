"""A thread-safe, blocking QMP channel built on the ``qemu.qmp`` library.

qemu.qmp is asyncio-native and its connections belong to the loop that opened them. Each channel
runs its own loop on a small daemon thread, so any thread (CLI, API worker, supervisor) may call
``execute`` without knowing about asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from qemu.qmp import EventListener, QMPClient
from qemu.qmp.error import QMPError

from virtkit.errors import EngineError

T = TypeVar("T")

# qemu.qmp logs every refused connect and teardown hiccup at ERROR; we turn those into EngineErrors, so keep
# Python's last-resort handler from printing them on a user's terminal.
logging.getLogger("qemu.qmp").addHandler(logging.NullHandler())


class QmpChannel:
    def __init__(self, socket_path: Path, name: str) -> None:
        self.socket_path = socket_path
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"qmp-{name}", daemon=True)
        self._thread.start()
        self._client = QMPClient(name)
        self._closed = False
        self._close_lock = threading.Lock()
        # Every event QEMU sends (SHUTDOWN, RESET, STOP, RESUME, ...), in order, for callers to poll.
        self._events: list[dict[str, Any]] = []
        self._events_lock = threading.Lock()
        self._listener = EventListener()
        self._client.register_listener(self._listener)
        self._pump: asyncio.Task[None] | None = None

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        if self._closed:
            coro.close()
            raise EngineError("the QMP channel is closed")
        fut = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout), self._loop)
        try:
            return fut.result(timeout + 1)
        except TimeoutError as exc:
            raise EngineError(f"QEMU did not answer QMP within {timeout:g}s") from exc
        except QMPError as exc:
            raise EngineError(f"QMP: {exc}") from exc
        except (OSError, EOFError) as exc:
            raise EngineError(f"QMP connection to QEMU lost: {exc}") from exc

    def connect(self, timeout: float = 10.0) -> None:
        self._run(self._client.connect(str(self.socket_path)), timeout)
        self._run(self._start_pump(), timeout)

    async def _start_pump(self) -> None:
        self._pump = asyncio.get_running_loop().create_task(self._collect())

    async def _stop_pump(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump

    async def _collect(self) -> None:
        async for event in self._listener:
            with self._events_lock:
                self._events.append(dict(event))

    def events(self, since: int = 0) -> list[dict[str, Any]]:
        """Events received so far, from index ``since`` on."""
        with self._events_lock:
            return list(self._events[since:])

    def event_count(self) -> int:
        with self._events_lock:
            return len(self._events)

    def execute(self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
        return self._run(self._client.execute(command, arguments), timeout)

    def close(self) -> None:
        with self._close_lock:  # wait() and destroy() may both end up here, from two threads
            self._close()

    def _close(self) -> None:
        if self._closed:
            return
        with contextlib.suppress(Exception):
            self._run(self._client.disconnect(), 5.0)
        with contextlib.suppress(EngineError):
            self._run(self._stop_pump(), 5.0)
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()
