"""The life of one sharded instance on one node, as a transition table (pure).

    starting --ready--> ready
    starting / ready --join_timeout | runner_died | peer_failed | load_timeout--> failed
    starting / ready / failed --stop--> stopping
    stopping --exited--> stopped

A failed instance is torn down at once (its manager sends `stop`), so `failed` is short-lived;
the failure's reason stays on the instance for the user to read. Events that mean nothing in a
state (a runner dying while we stop it, a late `ready`) are ignored: `advance` returns None.
"""

from __future__ import annotations

from typing import Literal

State = Literal["starting", "ready", "failed", "stopping", "stopped"]
Event = Literal[
    "ready",  # every rank is loaded (coordinator: rank 0's runner said ready; others: our own)
    "join_timeout",  # the ring did not form in time (a peer never joined)
    "load_timeout",  # the ring formed but the weights did not load in time
    "runner_died",  # our runner exited or said fatal, or one of its ring connections broke
    "peer_failed",  # another participant failed, or the link to it (or the coordinator) is gone
    "stop",  # unload, node shutdown, or teardown after a failure
    "exited",  # our runner is gone and its relay closed
]

_FAILURES: tuple[Event, ...] = ("join_timeout", "load_timeout", "runner_died", "peer_failed")

TRANSITIONS: dict[tuple[State, Event], State] = {
    ("starting", "ready"): "ready",
    **{("starting", event): "failed" for event in _FAILURES},
    **{("ready", event): "failed" for event in ("runner_died", "peer_failed")},
    ("starting", "stop"): "stopping",
    ("ready", "stop"): "stopping",
    ("failed", "stop"): "stopping",
    ("stopping", "exited"): "stopped",
}


def advance(state: State, event: Event) -> State | None:
    """The next state, or None when `event` changes nothing in `state`."""
    return TRANSITIONS.get((state, event))


def is_live(state: State) -> bool:
    """Counts as present (listed, occupying memory) in the cluster."""
    return state in ("starting", "ready")
