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
    shard: tuple[ShardPartView, ...] = ()  # a sharded instance's participants and their layers


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
    shards: tuple[ShardView, ...] = ()  # this node's parts of sharded instances


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
    shards: tuple[ShardView, ...] = ()  # its parts of sharded instances


@dataclass(frozen=True, slots=True)
class ClusterView:
    node: SelfView
    peers: tuple[PeerView, ...]


def to_json(view: SelfView | PeerView | ClusterView | ShardView) -> dict[str, Any]:
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


# ---- sharded models ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ShardPartView:
    """One participant of a sharded instance: which node holds which decoder layers."""

    id: str
    name: str
    rank: int
    layers: tuple[int, int]  # [start, end)


@dataclass(frozen=True, slots=True)
class ShardView:
    """One node's part of one sharded instance (in /v1/cluster, per node, and in its state)."""

    instance: str
    model: str
    mode: str  # "pipeline" or "tensor"
    state: str  # starting, ready, failed, stopping, stopped
    reason: str | None  # why it failed or stopped
    rank: int
    layers: tuple[int, int]
    memory_bytes: int
    tokens_per_second: float
    in_flight: int
    coordinator: str  # node id of rank 0
    participants: tuple[ShardPartView, ...]

    @classmethod
    def from_json(cls, body: dict) -> ShardView:
        """A view a peer sent in its state; raises KeyError/TypeError/ValueError if malformed."""
        parts = tuple(
            ShardPartView(str(p["id"]), str(p["name"]), int(p["rank"]), _pair(p["layers"]))
            for p in body["participants"]
        )
        return cls(
            str(body["instance"]), str(body["model"]), str(body["mode"]), str(body["state"]),
            body.get("reason"), int(body["rank"]), _pair(body["layers"]),
            int(body.get("memory_bytes", 0)), float(body.get("tokens_per_second", 0.0)),
            int(body.get("in_flight", 0)), str(body["coordinator"]), parts,
        )  # fmt: skip


def _pair(value: Any) -> tuple[int, int]:
    start, end = value
    return int(start), int(end)
