"""Frozen views of a node and its cluster: what the API encodes and the UI draws.

These are values, built by the node and the cluster on demand and never mutated, so any reader
(an API handler, a screen, a test) sees one consistent picture. Their field names are the JSON
names of GET /v1/cluster; `to_json` is the one encoder, used at the HTTP edges.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

# How a peer looks from here. "ok": paired, linked, state fresh. "connecting": paired, link being
# set up or its state is stale (a stopped process). "unreachable": paired, the last dial failed.
# "discovered": seen on the LAN, not paired. "unknown": nothing but an old trust entry.
Health = Literal["ok", "connecting", "unreachable", "discovered", "unknown"]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model as /v1/models and the UI show it."""

    id: str
    owned_by: str  # "local" or a peer's name
    loaded: bool
    size_bytes: int | None = None
    memory_bytes: int | None = None
    nodes: tuple[str, ...] = ()  # names of the nodes that hold it loaded
    here: bool = False  # its files are on this node (or it is loaded here)
    peers_with_files: tuple[str, ...] = ()  # names of the peers that could load it
    keep_alive_left: float | None = None  # loaded here: seconds until idle unload (None: kept)


@dataclass(frozen=True, slots=True)
class NodeStats:
    in_flight: int
    queued: int
    tokens_per_second: float
    memory_total: int
    memory_available: int
    uptime: float


@dataclass(frozen=True, slots=True)
class SelfView:
    """This node, as /v1/cluster's "node" and /health describe it."""

    id: str  # "" without a cluster (a solo node has no identity)
    name: str
    address: str
    version: str
    mode: str
    blas: str
    health: Health
    vram_total: int
    vram_free: int
    loaded_models: tuple[str, ...]
    requests_in_flight: int
    tokens_per_second: float


@dataclass(frozen=True, slots=True)
class PeerView:
    """One peer as this node sees it now. Load figures are those of its last fresh state."""

    id: str
    name: str
    address: str
    version: str
    paired: bool
    health: Health
    last_seen: float | None  # wall time of its last sign of life
    latency_ms: float | None
    vram_total: int | None
    vram_free: int | None
    loaded_models: tuple[str, ...]
    available_models: tuple[str, ...]
    requests_in_flight: int
    tokens_per_second: float
    mode: str | None
    discovered_by: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ClusterView:
    node: SelfView
    peers: tuple[PeerView, ...]


def to_json(view: SelfView | PeerView | ClusterView) -> dict[str, Any]:
    """The JSON object of a view (tuples become lists); ClusterView gets `"object": "cluster"`."""
    body = _lists(asdict(view))
    if isinstance(view, ClusterView):
        return {"object": "cluster", **body}
    return body


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_lists(v) for v in value]
    return value
