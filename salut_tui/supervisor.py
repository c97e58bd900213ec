"""Background tasks that cannot die silently.

A task created with `asyncio.create_task` and forgotten loses its exception (at best a warning at
garbage collection). The node and the cluster start their background work here instead:
  - `spawn`: one-shot work (a preload, one dial); an exception is logged with its traceback;
  - `keep_running`: a loop that must always run (the dialer, listed-peer polling); if it raises
    it is logged and restarted after a backoff that doubles up to `max_backoff`, and resets once
    the loop has run for a while without failing.
`stop` cancels everything and waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

HEALTHY_AFTER_S = 30.0  # a loop that ran this long before failing restarts at the first backoff


class Supervisor:
    def __init__(self, owner: str, *, first_backoff: float = 0.25, max_backoff: float = 10.0):
        self.owner = owner
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.restarts: dict[str, int] = {}  # loop name -> times it was restarted
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    def spawn(self, coro: Coroutine[Any, Any, object], *, name: str) -> asyncio.Task[None]:
        """Run `coro` once; log what it raises (cancellation aside)."""
        return self._track(self._once(coro, name), name)

    def keep_running(
        self, loop_fn: Callable[[], Coroutine[Any, Any, object]], *, name: str
    ) -> asyncio.Task[None]:
        """Run `loop_fn()` until stopped, restarting it with backoff whenever it raises or ends."""
        return self._track(self._forever(loop_fn, name), name)

    async def stop(self) -> None:
        self._stopping = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _track(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.owner}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _once(self, coro: Coroutine[Any, Any, object], name: str) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: background task %s failed", self.owner, name)

    async def _forever(self, loop_fn: Callable[[], Coroutine[Any, Any, object]], name: str) -> None:
        clock = asyncio.get_running_loop().time
        delay = self.first_backoff
        while not self._stopping:
            began = clock()
            try:
                await loop_fn()
                failure = "ended on its own"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failure = f"failed ({type(exc).__name__})"
                log.exception("%s: %s raised", self.owner, name)
            if clock() - began > HEALTHY_AFTER_S:
                delay = self.first_backoff
            log.error("%s: %s %s; restarting it in %.2fs", self.owner, name, failure, delay)
            self.restarts[name] = self.restarts.get(name, 0) + 1
            await asyncio.sleep(delay)
            delay = min(self.max_backoff, delay * 2)
