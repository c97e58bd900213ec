"""From what a node knows of itself and its peers to a shard plan (pure: no I/O).

`placement.plan_placement` picks the fewest nodes that hold the model. A user who names the
nodes (`salut load MODEL --shard --nodes A,B`) gets exactly those, in the order given after the
coordinator, with layers in proportion to each one's usable memory (`split_exact`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from salut_tui.shard.placement import (
    ModelShape,
    NodeCapacity,
    PlacementRefused,
    ShardPlan,
    Shortfall,
    StageAssignment,
    plan_placement,
)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A node that could take part: this one, or a healthy paired peer."""

    node_id: str
    name: str
    free_bytes: int
    models: frozenset[str]  # the models it has files for (or has loaded)
    healthy: bool = True
    partial: frozenset[str] = frozenset()  # weight files of the model planned, a partial copy


def plan_load(
    shape: ModelShape,
    me: Candidate,
    peers: Sequence[Candidate],
    *,
    nodes: Sequence[str] | None = None,
    headroom_bytes: int = 0,
) -> ShardPlan | PlacementRefused:
    """The plan for loading `shape` sharded with `me` as coordinator (rank 0)."""
    model = shape.model_id
    chosen: list[Candidate] = [p for p in peers if p.healthy]
    if nodes:
        chosen = []
        for ref in nodes:
            if ref in (me.name, me.node_id):
                continue
            match = [p for p in peers if ref in (p.name, p.node_id)]
            if not match:
                return PlacementRefused(model, f"no paired peer named '{ref}'")
            if not match[0].healthy:
                return PlacementRefused(model, f"the peer '{ref}' is not reachable now")
            chosen.append(match[0])
        if not chosen:
            return PlacementRefused(model, "name at least one peer besides this node")
    capacities = [_capacity(c, model) for c in (me, *chosen)]
    if nodes:
        return split_exact(shape, capacities, headroom_bytes)
    return plan_placement(shape, capacities, me.node_id, headroom_bytes)


def _capacity(candidate: Candidate, model: str) -> NodeCapacity:
    return NodeCapacity(
        candidate.node_id, candidate.name, candidate.free_bytes, model in candidate.models
    )


def split_exact(
    shape: ModelShape, nodes: list[NodeCapacity], headroom_bytes: int
) -> ShardPlan | PlacementRefused:
    """Every node in `nodes` (in that order) gets a contiguous range of at least one layer,
    sized in proportion to its usable memory; refused when a node would not fit its part."""
    count, total = len(nodes), shape.num_layers
    if total < count:
        return PlacementRefused(
            shape.model_id, f"'{shape.model_id}' has {total} layers: fewer than {count} nodes"
        )
    usable = [max(n.free_bytes - headroom_bytes, 0) for n in nodes]
    weight = sum(usable) or count
    bounds, start = [0], 0
    for rank in range(count - 1):
        share = round(total * sum(usable[: rank + 1]) / weight) if sum(usable) else 0
        end = min(max(share, start + 1), total - (count - 1 - rank))
        bounds.append(end)
        start = end
    bounds.append(total)
    stages = tuple(
        StageAssignment(
            rank,
            n.node_id,
            n.name,
            bounds[rank],
            bounds[rank + 1],
            shape.stage_bytes(
                bounds[rank], bounds[rank + 1], first=rank == 0, last=rank == count - 1
            ),
            usable[rank],
            n.has_model_files,
        )
        for rank, n in enumerate(nodes)
    )
    short = [s for s in stages if s.bytes_needed > s.usable_bytes]
    if short:
        return PlacementRefused(
            shape.model_id,
            f"the model '{shape.model_id}' does not fit on the nodes named",
            tuple(Shortfall(s.node_id, s.name, s.bytes_needed, s.usable_bytes) for s in stages),
        )
    return ShardPlan(shape.model_id, total, stages)
