"""Offering a copy to the participants of a plan that lack the model's files (pure).

Placement may pick a node without the model's files (it prefers nodes with them). Such a stage
can be given a copy from the coordinator before the load (`salut load MODEL --shard --copy`,
or the Models screen's "copy files first"): only the weight files that hold its layers where
the model's index says which file holds which tensor, else the whole model. A node that already
holds a partial copy with every file its stage needs (from an earlier copy) needs none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from salut_tui.shard.placement import CopyOffer, ShardPlan
from salut_tui.shard.weights import StageNeeds, WeightLayout


def stage_needs(plan: ShardPlan, rank: int, mode: str) -> StageNeeds:
    stage = plan.stages[rank]
    return StageNeeds(
        stage.layer_start, stage.layer_end, first=rank == 0, last=rank == plan.world_size - 1,
        whole=mode == "tensor",
    )  # fmt: skip


def offer_copies(
    plan: ShardPlan,
    layout: WeightLayout,
    held: Mapping[str, frozenset[str]],
    mode: str = "pipeline",
) -> ShardPlan:
    """`plan` with a copy offered to each stage without the files: the stages whose partial
    copy (`held`: node id -> the weight files it holds) covers their layers count as having
    them; the others get the files they still lack."""
    stages = list(plan.stages)
    offers = []
    for rank, stage in enumerate(plan.stages):
        if stage.has_model_files:
            continue
        needs = stage_needs(plan, rank, mode)
        have = held.get(stage.node_id, frozenset())
        if have and layout.covered(have, needs):
            stages[rank] = replace(stage, has_model_files=True)
            continue
        wanted = layout.files_for(needs)
        missing = wanted - have
        offers.append(
            CopyOffer(
                rank, stage.node_id, stage.name, tuple(sorted(missing)),
                layout.copy_bytes(missing), whole=wanted == layout.weight_files,
            )
        )  # fmt: skip
    return replace(plan, stages=tuple(stages), copies=tuple(offers))


def copied(plan: ShardPlan, offer: CopyOffer) -> ShardPlan:
    """`plan` once `offer` has been carried out: its stage has the files."""
    stages = tuple(
        replace(s, has_model_files=True) if s.rank == offer.rank else s for s in plan.stages
    )
    return replace(plan, stages=stages, copies=tuple(c for c in plan.copies if c is not offer))
