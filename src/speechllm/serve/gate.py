"""A fair gate in front of the shared models.

Models load once and are shared by every session; at most `workers` turns run at a time and
the rest wait in arrival order (first come, first served), so one busy client cannot starve
another. Blocking work runs in the gate's own thread pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class FairGate:
    def __init__(self, workers: int = 1, on_idle: Callable[[], object] | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.running = 0
        # run in the pool each time the last running turn ends with none waiting
        self.on_idle = on_idle
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self.pool = ThreadPoolExecutor(max_workers=workers + 2, thread_name_prefix="speechllm")

    @property
    def queued(self) -> int:
        return len(self._waiting)

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold one of the `workers` slots for the duration of a turn."""
        if self.running >= self.workers or self._waiting:
            ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.append(ticket)
            try:
                await ticket  # resolved by the turn that frees a slot, in arrival order
            except asyncio.CancelledError:
                if ticket in self._waiting:
                    self._waiting.remove(ticket)
                elif ticket.done() and not ticket.cancelled():
                    self._release()  # the slot was handed to us as we left: pass it on
                raise
        else:
            self.running += 1
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            ticket = self._waiting.popleft()
            if not ticket.done():
                ticket.set_result(None)  # the slot moves to the next in line
                return
        self.running -= 1
        if self.running == 0 and self.on_idle is not None:
            with contextlib.suppress(RuntimeError):  # the pool is shut down: the server stops
                self.pool.submit(self.on_idle)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` in the gate's thread pool, holding a slot."""
        async with self.turn():
            return await self.held(fn, *args)

    async def held(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` in the gate's thread pool, for a caller already holding a slot."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
