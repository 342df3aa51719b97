"""Lifecycle events: kept in the store (so a client can resume from a sequence number) and fanned out to
the asyncio queues of live SSE subscribers from whatever thread produced them."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from virtkit.daemon.store import Store


class EventBus:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._subs: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[dict[str, Any]]]] = []
        self._lock = threading.Lock()

    def publish(self, type: str, domain: str | None = None, state: str | None = None, reason: str = "") -> None:
        body: dict[str, Any] = {"time": time.time(), "type": type, "domain": domain, "state": state, "reason": reason}
        body["seq"] = self.store.add_event(body)
        with self._lock:
            subs = list(self._subs)
        for loop, q in subs:
            try:
                loop.call_soon_threadsafe(q.put_nowait, body)
            except RuntimeError:  # loop closed: the subscriber is gone
                self.unsubscribe(q)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10000)
        with self._lock:
            self._subs.append((asyncio.get_running_loop(), q))
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        with self._lock:
            self._subs = [(lp, x) for lp, x in self._subs if x is not q]

    def since(self, seq: int) -> list[dict[str, Any]]:
        out = []
        for s, body in self.store.events_since(seq):
            body["seq"] = s
            out.append(body)
        return out
