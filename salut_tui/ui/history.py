"""The Overview's history: tokens/s, requests in flight and memory in use, per node and per
paired peer, sampled once a second into bounded deques (never per token).

Samples come from the same views the screens draw (`NodeStats`, `PeerView`), so an attached UI
keeps history the same way as an in-process one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from salut_tui.views import NodeStats, PeerView

WINDOW = 300  # samples at 1 Hz: the last five minutes
SELF = ""  # the key of this node's series


@dataclass(slots=True)
class NodeSeries:
    """The last `WINDOW` samples of one node."""

    name: str
    rate: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    in_flight: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    memory_used: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    memory_total: int | None = None

    def add(self, rate: float, in_flight: int, used: int | None, total: int | None) -> None:
        self.rate.append(rate)
        self.in_flight.append(float(in_flight))
        if used is not None:
            self.memory_used.append(float(used))
        self.memory_total = total if total is not None else self.memory_total


class History:
    """This node's series under `SELF`, then one per paired peer (dropped when unpaired)."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeSeries] = {}

    def sample(self, name: str, stats: NodeStats, peers: Iterable[PeerView]) -> None:
        own = self.nodes.setdefault(SELF, NodeSeries(name))
        own.name = name
        own_used = stats.memory_total - stats.memory_available
        own.add(stats.tokens_per_second, stats.in_flight, own_used, stats.memory_total)
        paired = {p.id: p for p in peers if p.paired}
        for peer_id in [k for k in self.nodes if k != SELF and k not in paired]:
            del self.nodes[peer_id]
        for peer_id, peer in paired.items():
            series = self.nodes.setdefault(peer_id, NodeSeries(peer.name))
            series.name = peer.name or series.name
            if peer.health != "ok":  # a peer that is away serves nothing from here
                series.add(0.0, 0, None, None)
                continue
            used: int | None = None
            if peer.vram_total is not None and peer.vram_free is not None:
                used = peer.vram_total - peer.vram_free
            series.add(peer.tokens_per_second, peer.requests_in_flight, used, peer.vram_total)
