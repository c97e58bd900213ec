"""What a row of the Models screen says and which node an action goes to (pure, no Textual).

Where a model lives: "here" (its files are on this node) and the peers that have its files.
Where it is loaded: "here" and/or peers' names. An action goes to the node it makes sense on:
load here when the files are here, else on a peer that has them; unload where it is loaded.
A sharded model is "sharded" in Where, and Loaded on lists every participant and its layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from salut_tui.keepalive import describe
from salut_tui.shard.placement import ShardPlan
from salut_tui.views import ModelInfo

HERE = "here"
SHARDED = "sharded"


@dataclass(frozen=True, slots=True)
class Target:
    """The node an action goes to: None for this node, else a peer's name."""

    peer: str | None

    @property
    def label(self) -> str:
        return HERE if self.peer is None else self.peer


def where(info: ModelInfo) -> str:
    if info.shard:
        return SHARDED
    holders = ([HERE] if info.here else []) + list(info.peers_with_files)
    return ", ".join(holders) or "-"


def loaded_on(info: ModelInfo, self_name: str) -> str:
    if info.shard:  # every participant, rank order, with its decoder layers [start, end)
        return ", ".join(
            f"{HERE if p.name == self_name else p.name} {p.layers[0]}-{p.layers[1]}"
            for p in sorted(info.shard, key=lambda p: p.rank)
        )
    names = [HERE if n == self_name and info.here else n for n in info.nodes]
    return ", ".join(names) or "-"


def idle_unload(info: ModelInfo, self_name: str) -> str:
    """Time left before this node unloads it when idle ("kept" when it stays)."""
    if not (info.here and self_name in info.nodes):
        return ""
    if info.keep_alive_left is None:
        return "kept"
    return f"in {describe(info.keep_alive_left)}"


def loaded_here(info: ModelInfo, self_name: str) -> bool:
    return info.here and self_name in info.nodes


def load_target(info: ModelInfo) -> Target | None:
    """Where `l` loads it: here when the files are here, else on the first peer with them."""
    if info.here:
        return Target(None)
    return Target(info.peers_with_files[0]) if info.peers_with_files else None


def unload_target(info: ModelInfo, self_name: str) -> Target | None:
    """Where `u` unloads it: here when loaded here, else on the first peer holding it."""
    if loaded_here(info, self_name):
        return Target(None)
    peers = [n for n in info.nodes if n != self_name]
    return Target(peers[0]) if peers else None


def pull_source(info: ModelInfo) -> str | None:
    """The peer `p` copies it from; None when it is here already or no peer has it."""
    if info.here or not info.peers_with_files:
        return None
    return info.peers_with_files[0]


def describe_plan(plan: ShardPlan, show_bytes: Callable[[int | None], str]) -> str:
    """The plan of a sharded load as the confirm dialog shows it: layers and memory per node."""
    lines = [f"{plan.num_layers} decoder layers over {plan.world_size} nodes:"]
    for s in plan.stages:
        files = "" if s.has_model_files else "  (no files!)"
        lines.append(
            f"  {s.name[:14]:<14} layers {s.layer_start:>3}-{s.layer_end:<3} "
            f"{show_bytes(s.bytes_needed)} of {show_bytes(s.usable_bytes)}{files}"
        )
    for offer in plan.copies:  # what the "copy first" answer copies: its layers' files
        lines.append(f"copy first to {offer.describe()}")
    missing = plan.missing_files_message()
    if missing is not None and not plan.copies:
        lines.append(missing)
    return "\n".join(lines)
