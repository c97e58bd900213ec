"""Which peers may serve a request, best first (pure: no sockets, no clock)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Candidate:
    """What routing needs to know about one healthy, paired peer."""

    node_id: str
    loaded: frozenset[str]
    available: frozenset[str]
    load: int  # requests in flight + queued on that peer
    rtt: float | None = None


def choose_peers(model: str, candidates: list[Candidate], *, local_can_load: bool) -> list[str]:
    """Peers to try in order for `model`.

    Peers that have it loaded come first, least loaded first (then the nearest). If none has it
    loaded and this node could load it itself, the answer is empty: loading here beats loading
    on a peer. Otherwise peers that could load it follow, in the same order.
    """

    def order(c: Candidate) -> tuple[int, float, str]:
        return (c.load, c.rtt if c.rtt is not None else float("inf"), c.node_id)

    loaded = sorted((c for c in candidates if model in c.loaded), key=order)
    if not loaded and local_can_load:
        return []
    loadable = sorted(
        (c for c in candidates if model not in c.loaded and model in c.available), key=order
    )
    return [c.node_id for c in loaded] + ([] if local_can_load else [c.node_id for c in loadable])
