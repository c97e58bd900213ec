"""From a node's view of itself and its peers to a shard plan (pure)."""

from __future__ import annotations

from salut_tui.shard.placement import ModelShape, PlacementRefused, ShardPlan
from salut_tui.shard.planning import Candidate, plan_load

GIB = 1024**3
SHAPE = ModelShape("org/m", (GIB,) * 8, embed_bytes=0, head_bytes=0)
ME = Candidate("id-a", "a", 30 * GIB, frozenset({"org/m"}))
B = Candidate("id-b", "b", 10 * GIB, frozenset({"org/m"}))
C = Candidate("id-c", "c", 10 * GIB, frozenset(), healthy=False)


def _ranges(plan: ShardPlan | PlacementRefused) -> list[tuple[str, int, int]]:
    assert isinstance(plan, ShardPlan), plan
    return [(s.name, s.layer_start, s.layer_end) for s in plan.stages]


def test_named_nodes_are_all_used_in_proportion_to_their_memory() -> None:
    assert _ranges(plan_load(SHAPE, ME, [B, C], nodes=["b"])) == [("a", 0, 6), ("b", 6, 8)]
    equal = Candidate("id-a", "a", 10 * GIB, ME.models)
    assert _ranges(plan_load(SHAPE, equal, [B], nodes=["a", "id-b"])) == [
        ("a", 0, 4),
        ("b", 4, 8),
    ]


def test_without_names_the_fewest_nodes_that_fit() -> None:
    assert _ranges(plan_load(SHAPE, ME, [B, C])) == [("a", 0, 8)]
    small = Candidate("id-a", "a", 5 * GIB, ME.models)
    plan = plan_load(SHAPE, small, [B, C])
    assert [s[0] for s in _ranges(plan)] == ["a", "b"]  # c is not reachable


def test_refusals_name_the_problem() -> None:
    unknown = plan_load(SHAPE, ME, [B], nodes=["zed"])
    assert isinstance(unknown, PlacementRefused) and "no paired peer named 'zed'" in unknown.reason
    gone = plan_load(SHAPE, ME, [B, C], nodes=["c"])
    assert isinstance(gone, PlacementRefused) and "not reachable" in gone.reason
    tight = Candidate("id-b", "b", 1 * GIB, B.models)
    short = plan_load(SHAPE, Candidate("id-a", "a", 2 * GIB, ME.models), [tight], nodes=["b"])
    assert isinstance(short, PlacementRefused)
    assert [(s.name, s.short_bytes > 0) for s in short.shortfalls] == [("a", True), ("b", True)]
    assert "does not fit" in short.message


def test_a_peer_without_the_files_is_marked_in_the_plan() -> None:
    bare = Candidate("id-b", "b", 10 * GIB, frozenset())
    plan = plan_load(SHAPE, ME, [bare], nodes=["b"])
    assert isinstance(plan, ShardPlan)
    assert (
        plan.missing_files_message() == "the model 'org/m' is not on b: copy its files there first"
    )
