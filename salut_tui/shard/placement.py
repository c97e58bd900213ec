"""Where the layers of a sharded model go: a pure decision, no I/O.

Given the model's shape (bytes per decoder layer, embeddings, head) and each node's free memory,
`plan_placement` picks the fewest nodes that hold the model (the coordinator always, as rank 0),
then splits the layers into contiguous ranges so that every node is filled to the same fraction
of what it has free after the headroom: layers in proportion to free memory. A model that cannot
fit is refused before anything starts, with the shortfall of each node.

Stage costs: rank 0 (first layers) holds the token embeddings, the last rank holds the final
norm and the head (and the embeddings again when the head is tied to them), every rank its layers.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

GIB = 1024**3
# Above this many candidate nodes, subsets are no longer enumerated (greedy order instead).
_MAX_EXHAUSTIVE = 12
_SEARCH_STEPS = 64
_MAX_PERMUTED = 4  # up to this many helpers, every rank order is tried


@dataclass(frozen=True, slots=True)
class ModelShape:
    model_id: str
    layer_bytes: tuple[int, ...]  # one entry per decoder layer, in order
    embed_bytes: int  # token embeddings (first stage; the last one too when tied)
    head_bytes: int  # final norm, lm_head and any other tensor outside the layers (last stage)
    tied_embeddings: bool = False

    @property
    def num_layers(self) -> int:
        return len(self.layer_bytes)

    @property
    def total_bytes(self) -> int:
        return sum(self.layer_bytes) + self.embed_bytes + self.head_bytes

    def stage_bytes(self, start: int, end: int, *, first: bool, last: bool) -> int:
        """Bytes one stage holding layers [start, end) keeps in memory."""
        total = sum(self.layer_bytes[start:end])
        if first:
            total += self.embed_bytes
        if last:
            total += self.head_bytes
            if self.tied_embeddings and not first:
                total += self.embed_bytes
        return total


@dataclass(frozen=True, slots=True)
class NodeCapacity:
    node_id: str
    name: str
    free_bytes: int
    has_model_files: bool


@dataclass(frozen=True, slots=True)
class StageAssignment:
    rank: int
    node_id: str
    name: str
    layer_start: int
    layer_end: int
    bytes_needed: int
    usable_bytes: int  # free memory less the headroom
    has_model_files: bool


@dataclass(frozen=True, slots=True)
class CopyOffer:
    """The files a participant without them would get copied from the coordinator first (see
    `copies.offer_copies`): only its layers' weight files where the model's index allows."""

    rank: int
    node_id: str
    name: str
    files: tuple[str, ...]  # weight files to copy, sorted
    bytes: int  # what travels: those files and the small ones (config, tokenizer, index)
    whole: bool  # every weight file: a whole copy of the model

    def describe(self) -> str:
        what = "the whole model" if self.whole else ", ".join(self.files) or "no weight file"
        return f"{self.name}: {what} ({self.bytes / 1e6:.1f} MB)"


@dataclass(frozen=True, slots=True)
class ShardPlan:
    model_id: str
    num_layers: int
    stages: tuple[StageAssignment, ...]  # by rank; rank 0 is the coordinator
    copies: tuple[CopyOffer, ...] = ()  # for the stages without files, what `--copy` copies

    @property
    def world_size(self) -> int:
        return len(self.stages)

    @property
    def node_ids(self) -> tuple[str, ...]:
        return tuple(s.node_id for s in self.stages)

    @property
    def missing_files(self) -> tuple[StageAssignment, ...]:
        """Participants that lack the model's files: the plan cannot start until they have them."""
        return tuple(s for s in self.stages if not s.has_model_files)

    def missing_files_message(self) -> str | None:
        if not self.missing_files:
            return None
        names = ", ".join(s.name for s in self.missing_files)
        message = f"the model '{self.model_id}' is not on {names}: copy its files there first"
        if self.copies:
            offers = "; ".join(c.describe() for c in self.copies)
            message += f" (--copy would copy {offers})"
        return message


@dataclass(frozen=True, slots=True)
class Shortfall:
    node_id: str
    name: str
    needed_bytes: int
    usable_bytes: int

    @property
    def short_bytes(self) -> int:
        return max(0, self.needed_bytes - self.usable_bytes)


@dataclass(frozen=True, slots=True)
class PlacementRefused:
    """No plan fits (becomes a 507 insufficient_memory naming every node's shortfall)."""

    model_id: str
    reason: str
    shortfalls: tuple[Shortfall, ...] = ()

    @property
    def message(self) -> str:
        parts = [
            f"{s.name} would need {s.needed_bytes / GIB:.2f} GiB but has "
            f"{max(s.usable_bytes, 0) / GIB:.2f} GiB free after headroom "
            f"(short {s.short_bytes / GIB:.2f} GiB)"
            for s in self.shortfalls
            if s.short_bytes > 0
        ]
        return self.reason + (": " + "; ".join(parts) if parts else "")


def plan_placement(
    model: ModelShape, nodes: list[NodeCapacity], coordinator: str, headroom_bytes: int
) -> ShardPlan | PlacementRefused:
    """The plan on the fewest nodes that fits, coordinator first; else the refusal."""
    by_id = {n.node_id: n for n in nodes}
    if coordinator not in by_id:
        return PlacementRefused(model.model_id, f"the coordinator {coordinator} is not a node")
    if model.num_layers == 0:
        return PlacementRefused(model.model_id, f"the model '{model.model_id}' has no layers")
    head = by_id[coordinator]
    # Nodes with the files first, then the roomiest, then by name: the order to try them in.
    others = sorted(
        (n for n in nodes if n.node_id != coordinator),
        key=lambda n: (not n.has_model_files, -n.free_bytes, n.name, n.node_id),
    )
    most = min(len(nodes), model.num_layers)
    for count in range(1, most + 1):
        best: tuple[tuple, ShardPlan] | None = None
        for chosen in _subsets(others, count - 1):
            for group in _orders(head, chosen):
                bounds = _balanced_split(model, [_usable(n, headroom_bytes) for n in group])
                if bounds is None:
                    continue
                plan = _plan(model, group, bounds, headroom_bytes)
                if any(s.bytes_needed > s.usable_bytes for s in plan.stages):
                    continue
                rank = (len(plan.missing_files), _worst_fill(plan), plan.node_ids)
                if best is None or rank < best[0]:
                    best = (rank, plan)
        if best is not None:
            return best[1]
    return _refusal(model, [head, *others[: most - 1]], headroom_bytes)


def _usable(node: NodeCapacity, headroom_bytes: int) -> int:
    return node.free_bytes - headroom_bytes


def _subsets(others: list[NodeCapacity], size: int) -> list[tuple[NodeCapacity, ...]]:
    if len(others) > _MAX_EXHAUSTIVE:
        return [tuple(others[:size])]
    return list(itertools.combinations(others, size))


def _orders(head: NodeCapacity, chosen: tuple[NodeCapacity, ...]) -> list[list[NodeCapacity]]:
    """Rank orders worth trying, the coordinator always first. Layers differ in size and the
    last stage also holds the head, so the order can decide whether a plan fits: every order
    for a few nodes; for more, each node once as the last stage, the rest roomiest first."""
    if len(chosen) <= _MAX_PERMUTED:
        return [[head, *order] for order in itertools.permutations(chosen)]
    return [[head, *(n for n in chosen if n is not last), last] for last in chosen]


def _worst_fill(plan: ShardPlan) -> float:
    return max(s.bytes_needed / max(s.usable_bytes, 1) for s in plan.stages)


def _plan(
    model: ModelShape, group: list[NodeCapacity], bounds: list[int], headroom_bytes: int
) -> ShardPlan:
    last = len(group) - 1
    stages = tuple(
        StageAssignment(
            rank=rank,
            node_id=node.node_id,
            name=node.name,
            layer_start=bounds[rank],
            layer_end=bounds[rank + 1],
            bytes_needed=model.stage_bytes(
                bounds[rank], bounds[rank + 1], first=rank == 0, last=rank == last
            ),
            usable_bytes=_usable(node, headroom_bytes),
            has_model_files=node.has_model_files,
        )
        for rank, node in enumerate(group)
    )
    return ShardPlan(model.model_id, model.num_layers, stages)


def _fill(model: ModelShape, prefix: list[int], capacities: list[float]) -> list[int] | None:
    """Layer boundaries when each stage takes as many layers as fit in its capacity (each at
    least one, leaving one for every later stage); None when some stage cannot fit."""
    count, total = len(capacities), model.num_layers
    bounds = [0]
    start = 0
    for rank, capacity in enumerate(capacities):
        first, last = rank == 0, rank == count - 1
        extra = _extra_bytes(model, first=first, last=False)
        if last:
            end = total
        else:
            end = start
            limit = total - (count - 1 - rank)
            while end < limit and prefix[end + 1] - prefix[start] + extra <= capacity:
                end += 1
            if end == start:
                return None
        if prefix[end] - prefix[start] + _extra_bytes(model, first=first, last=last) > capacity:
            return None
        bounds.append(end)
        start = end
    return bounds


def _extra_bytes(model: ModelShape, *, first: bool, last: bool) -> int:
    """What a stage holds besides its layers (see ModelShape.stage_bytes)."""
    return model.stage_bytes(0, 0, first=first, last=last)


def _balanced_split(model: ModelShape, usable: list[int]) -> list[int] | None:
    """Boundaries that fill every stage to the same (smallest possible) fraction of its usable
    memory, found by bisection on that fraction; None when a stage has no room at all."""
    if any(u <= 0 for u in usable) or model.num_layers < len(usable):
        return None
    prefix = list(itertools.accumulate(model.layer_bytes, initial=0))
    low, high = 0.0, model.total_bytes / min(usable) + 1.0
    best = _fill(model, prefix, [u * high for u in usable])
    if best is None:
        return None
    for _ in range(_SEARCH_STEPS):
        middle = (low + high) / 2
        bounds = _fill(model, prefix, [u * middle for u in usable])
        if bounds is None:
            low = middle
        else:
            high, best = middle, bounds
    return best


def _refusal(model: ModelShape, group: list[NodeCapacity], headroom_bytes: int) -> PlacementRefused:
    """Every node's shortfall under the most balanced split over all of them."""
    reason = (
        f"the model '{model.model_id}' needs {model.total_bytes / GIB:.2f} GiB and does not "
        f"fit on the {len(group)} node(s) that could hold it"
    )
    usable = [max(_usable(n, headroom_bytes), 1) for n in group]
    bounds = _balanced_split(model, usable)
    if bounds is None:  # fewer layers than nodes, or nobody has room: even split for the record
        size = len(group)
        bounds = [model.num_layers * r // size for r in range(size + 1)]
    plan = _plan(model, group, bounds, headroom_bytes)
    shortfalls = tuple(
        Shortfall(s.node_id, s.name, s.bytes_needed, s.usable_bytes) for s in plan.stages
    )
    return PlacementRefused(model.model_id, reason, shortfalls)
