"""Stopping a node without lying to its clients.

On SIGTERM/SIGINT `salut serve` drains the node before stopping it: the node's `ShutdownGate`
closes, so every new generation (API, UI or a peer's) is refused with 503 `server_shutting_down`;
the requests already running get `Settings.shutdown_grace` seconds to finish; then the node stops,
and the engine ends whatever is left with that same error: an SSE error event and `data: [DONE]`
for a stream, a 503 for a regular response. A truncated answer never reads as a normal finish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from salut_tui.engine import errors
from salut_tui.engine.types import Error

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05  # how often the drain looks at the in-flight count


class ShutdownGate:
    """Whether the node still takes new generations."""

    def __init__(self) -> None:
        self.open = True

    def close(self) -> None:
        self.open = False

    def refusal(self) -> Error | None:
        """The error a new generation gets, or None while the node takes requests."""
        return None if self.open else errors.shutting_down()


async def drain(
    gate: ShutdownGate,
    in_flight: Callable[[], int],
    grace: float,
    *,
    cut_short: asyncio.Event | None = None,
) -> int:
    """Close the gate, then wait up to `grace` seconds for `in_flight()` to reach zero, or until
    `cut_short` is set (a second Ctrl-C: the person does not want to wait).

    Returns how many requests are still running (the caller's stop ends them with an error).
    """
    gate.close()
    running = in_flight()
    if running:
        log.info(
            "shutting down: refusing new requests, %d in flight get up to %gs to finish",
            running,
            grace,
        )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while running and loop.time() < deadline and not (cut_short and cut_short.is_set()):
        await asyncio.sleep(min(POLL_SECONDS, max(deadline - loop.time(), 0)))
        running = in_flight()
    if running:
        log.warning(
            "shutdown grace of %gs over: ending %d request(s) with an error", grace, running
        )
    return running
