"""Letting MLX's ring threads spin only on CPU time nobody else wants (Linux).

The ring backend gives each socket a thread that, while an operation is pending, polls its
non-blocking socket in a loop without sleeping. A rank waiting for its neighbour (a pipeline
rank between two of its turns, rank 0 waiting for the token) so keeps a whole core busy doing
nothing. When ranks share cores with each other or with the node's relay (which must run for
the awaited message to arrive at all) that spinning delays the very message it waits for.

So once the ring is up the runner moves the threads `mx.distributed.init` started to the
SCHED_IDLE class: they still spin on an idle core, but the kernel gives any normal thread
(the rank's compute, the relay, the other rank) the core first. Where the class does not exist
(macOS) nothing changes.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

ENV = "SALUT_RING_THREADS"  # "idle" (the default) or "normal": for measuring the difference


def thread_ids() -> set[int]:
    try:
        return {int(name) for name in os.listdir("/proc/self/task")}
    except OSError:
        return set()


def yield_ring_threads(before: set[int]) -> int:
    """Move the threads started since `before` was taken to SCHED_IDLE; how many moved."""
    if os.environ.get(ENV, "idle") != "idle" or not hasattr(os, "SCHED_IDLE"):
        return 0
    moved = 0
    for tid in thread_ids() - before:
        try:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            moved += 1
        except OSError as exc:  # gone already, or not allowed: spinning is only slower
            log.debug("thread %d keeps its scheduling class: %s", tid, exc)
    return moved
