"""Letting MLX's ring threads spin mostly on CPU time nobody else wants (Linux).

The ring backend gives each socket a thread that, while an operation is pending, polls its
non-blocking socket in a loop without sleeping. A rank waiting for its neighbour (a pipeline
rank between two of its turns, rank 0 waiting for the token) so keeps a whole core busy doing
nothing. When ranks share cores with each other or with the node's relay (which must run for
the awaited message to arrive at all) that spinning delays the very message it waits for.

So once the ring is up the runner lowers the priority of the threads `mx.distributed.init`
started (nice RING_NICE): the kernel gives a normal thread (the rank's compute, the relay, the
other rank) a shared core about nine times as often, yet the ring still gets its turns when
unrelated programs load every core. SCHED_IDLE was tried too and is worse there: an idle-class
thread runs only when a core has nothing else to do, so under outside load a relayed `all_sum`
took 7-8 ms instead of 1-3 (bench/README.md). Where thread priorities do not apply (macOS),
nothing changes.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

RING_NICE = 10
ENV = "SALUT_RING_NICE"  # another nice value, or "normal" to leave the threads alone (measuring)


def thread_ids() -> set[int]:
    try:
        return {int(name) for name in os.listdir("/proc/self/task")}
    except OSError:
        return set()


def yield_ring_threads(before: set[int]) -> int:
    """Lower the priority of the threads started since `before` was taken; how many."""
    wanted = os.environ.get(ENV, str(RING_NICE))
    if wanted == "normal" or not sys.platform.startswith("linux"):
        return 0
    moved = 0
    for tid in thread_ids() - before:
        try:  # a thread's own nice value on Linux (lowering priority needs no privilege)
            nice = max(int(wanted), os.getpriority(os.PRIO_PROCESS, tid))
            os.setpriority(os.PRIO_PROCESS, tid, nice)
            moved += 1
        except (OSError, ValueError) as exc:  # gone already, or a bad value: only slower
            log.debug("thread %d keeps its priority: %s", tid, exc)
    return moved
