"""The answer slots: at most ``parallel`` answers at once, ``queue_size`` more waiting.

A question holds a slot from retrieval to its answer's last token (a stream's slot is
released when the stream ends, however it ends: finished, failed or abandoned by its
client). One more than the slots and the queue can take is refused at once with 429
and a ``Retry-After`` estimated from how long answers have been taking, rather than
left to wait behind a queue it cannot see the end of.
"""

from __future__ import annotations

import asyncio
import time

from ragtune.serve.auth import retry_after
from ragtune.serve.errors import ApiError
from ragtune.serve.metrics import IN_FLIGHT, QUEUE_DEPTH, REJECTED

# Before any answer was timed: a guess of how long one takes.
_FIRST_ESTIMATE_SECONDS = 2.0


class Slot:
    """A held slot; ``release()`` is idempotent, so every path that ends a request may call it."""

    def __init__(self, slots: AnswerSlots) -> None:
        self._slots = slots
        self._started = time.monotonic()
        self._released = False

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._slots._release(time.monotonic() - self._started)


class AnswerSlots:
    def __init__(self, parallel: int, queue_size: int) -> None:
        self.parallel = max(1, parallel)
        self.queue_size = max(0, queue_size)
        self.running = 0
        self.waiting = 0
        self._semaphore: asyncio.Semaphore | None = None
        self._seconds_per_answer = _FIRST_ESTIMATE_SECONDS

    async def acquire(self) -> Slot:
        """A slot, waiting in the queue if need be; 429 when the queue is full."""
        if self._semaphore is None:  # made in the event loop that serves
            self._semaphore = asyncio.Semaphore(self.parallel)
        if self.running >= self.parallel and self.waiting >= self.queue_size:
            REJECTED.labels("queue_full").inc()
            ahead = self.waiting + 1
            wait = self._seconds_per_answer * ahead / self.parallel
            raise ApiError(
                429,
                f"the server is answering {self.running} questions and {self.waiting} "
                "are waiting; try again shortly",
                code="server_busy",
                headers={"Retry-After": retry_after(wait)},
            )
        self.waiting += 1
        QUEUE_DEPTH.inc()
        try:
            await self._semaphore.acquire()
        finally:
            self.waiting -= 1
            QUEUE_DEPTH.dec()
        self.running += 1
        IN_FLIGHT.inc()
        return Slot(self)

    def _release(self, seconds: float) -> None:
        self.running -= 1
        IN_FLIGHT.dec()
        # A moving average: recent answers say most about the next ones.
        self._seconds_per_answer = 0.8 * self._seconds_per_answer + 0.2 * seconds
        assert self._semaphore is not None
        self._semaphore.release()
