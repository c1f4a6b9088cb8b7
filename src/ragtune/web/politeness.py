"""Per-host politeness: a concurrency cap, a delay between requests, and Retry-After blocks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class _HostState:
    slots: threading.Semaphore
    next_allowed: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class HostThrottle:
    """Every request to a host goes through ``slot(host)``.

    At most ``per_host`` requests to one host run at once; consecutive requests
    to a host start at least ``delay`` seconds apart; ``block(host, seconds)``
    (a Retry-After) holds every later request to that host back.
    """

    def __init__(self, per_host: int = 4, delay: float = 0.0) -> None:
        self.per_host = max(1, per_host)
        self.delay = max(0.0, delay)
        self._hosts: dict[str, _HostState] = {}
        self._delays: dict[str, float] = {}
        self._lock = threading.Lock()

    def _state(self, host: str) -> _HostState:
        with self._lock:
            if host not in self._hosts:
                self._hosts[host] = _HostState(threading.Semaphore(self.per_host))
            return self._hosts[host]

    def set_delay(self, host: str, seconds: float) -> None:
        """A host-specific delay, such as robots.txt's Crawl-delay; the larger one wins."""
        with self._lock:
            self._delays[host] = max(self.delay, seconds)

    def block(self, host: str, seconds: float) -> None:
        state = self._state(host)
        with state.lock:
            state.next_allowed = max(state.next_allowed, time.monotonic() + seconds)

    @contextmanager
    def slot(self, host: str) -> Iterator[None]:
        state = self._state(host)
        delay = self._delays.get(host, self.delay)
        with state.slots:
            while True:
                with state.lock:
                    wait = state.next_allowed - time.monotonic()
                    if wait <= 0:
                        state.next_allowed = time.monotonic() + delay
                        break
                time.sleep(min(wait, 1.0))
            yield
