"""Placement of a sharded model's layers: a pure function, checked case by case and against a
brute-force search over every node subset, rank order and layer split of small instances."""

from __future__ import annotations

import itertools
import json
import random
import struct
from pathlib import Path

import pytest

from salut_tui.shard.placement import (
    GIB,
    ModelShape,
    NodeCapacity,
    PlacementRefused,
    ShardPlan,
    plan_placement,
)
from salut_tui.shard.shape import model_shape, safetensors_sizes

MB = 1024**2


def shape(layers: int = 10, layer_mb: int = 100, embed_mb: int = 50, head_mb: int = 60, **kw):
    return ModelShape("org/model", (layer_mb * MB,) * layers, embed_mb * MB, head_mb * MB, **kw)


def node(name: str, free_mb: int, files: bool = True) -> NodeCapacity:
    return NodeCapacity(f"id-{name}", name, free_mb * MB, files)


def check_plan(plan: ShardPlan, model: ModelShape, coordinator: str) -> None:
    """Invariants every plan keeps."""
    assert plan.stages[0].node_id == coordinator
    assert [s.rank for s in plan.stages] == list(range(plan.world_size))
    assert plan.stages[0].layer_start == 0 and plan.stages[-1].layer_end == model.num_layers
    for a, b in itertools.pairwise(plan.stages):
        assert a.layer_end == b.layer_start
    last = plan.world_size - 1
    for s in plan.stages:
        assert s.layer_end > s.layer_start
        expected = model.stage_bytes(
            s.layer_start, s.layer_end, first=s.rank == 0, last=s.rank == last
        )
        assert s.bytes_needed == expected
        assert s.bytes_needed <= s.usable_bytes
    assert len(set(plan.node_ids)) == plan.world_size


def test_one_node_that_fits_takes_everything():
    model = shape()
    plan = plan_placement(model, [node("a", 2000), node("b", 5000)], "id-a", 0)
    assert isinstance(plan, ShardPlan)
    assert plan.world_size == 1
    assert (plan.stages[0].layer_start, plan.stages[0].layer_end) == (0, 10)
    assert plan.stages[0].bytes_needed == model.total_bytes
    check_plan(plan, model, "id-a")


def test_coordinator_is_rank_zero_with_the_first_layers_even_when_smaller():
    model = shape()  # 1110 MB
    plan = plan_placement(model, [node("big", 900), node("small", 400)], "id-small", 0)
    assert isinstance(plan, ShardPlan)
    assert plan.node_ids == ("id-small", "id-big")
    assert plan.stages[0].layer_start == 0
    check_plan(plan, model, "id-small")


def test_layers_split_in_proportion_to_free_memory():
    model = ModelShape("m", (10 * MB,) * 100, 0, 0)  # 1000 MB: no single node below holds it
    plan = plan_placement(model, [node("a", 750), node("b", 260)], "id-a", 0)
    assert isinstance(plan, ShardPlan)
    assert [s.layer_end - s.layer_start for s in plan.stages] == [75, 25]
    plan = plan_placement(model, [node("a", 600), node("b", 600)], "id-a", 0)
    assert isinstance(plan, ShardPlan)
    assert [s.layer_end - s.layer_start for s in plan.stages] == [50, 50]


def test_three_nodes_share_by_free_memory():
    model = ModelShape("m", (10 * MB,) * 60, 0, 0)
    nodes = [node("a", 310), node("b", 205), node("c", 105)]
    plan = plan_placement(model, nodes, "id-a", 0)
    assert isinstance(plan, ShardPlan)
    assert plan.node_ids == ("id-a", "id-b", "id-c")
    assert [s.layer_end - s.layer_start for s in plan.stages] == [30, 20, 10]


def test_headroom_is_kept_on_every_node():
    model = shape()  # 1110 MB
    fits = plan_placement(model, [node("a", 1200)], "id-a", 80 * MB)
    assert isinstance(fits, ShardPlan)
    refused = plan_placement(model, [node("a", 1200)], "id-a", 100 * MB)
    assert isinstance(refused, PlacementRefused)
    assert refused.shortfalls[0].usable_bytes == 1100 * MB
    assert refused.shortfalls[0].short_bytes == 10 * MB


def test_fewest_nodes_first_and_the_roomiest_helpers():
    model = shape()  # 1110 MB
    nodes = [node("a", 500), node("b", 300), node("c", 700), node("d", 650)]
    plan = plan_placement(model, nodes, "id-a", 0)
    assert isinstance(plan, ShardPlan)
    assert plan.world_size == 2
    assert set(plan.node_ids) == {"id-a", "id-c"}
    check_plan(plan, model, "id-a")


def test_nodes_with_the_files_are_preferred():
    model = shape()
    nodes = [node("a", 500), node("nofiles", 2000, files=False), node("files", 700)]
    plan = plan_placement(model, nodes, "id-a", 0)
    assert isinstance(plan, ShardPlan)
    assert plan.node_ids == ("id-a", "id-files")
    assert plan.missing_files == ()
    assert plan.missing_files_message() is None


def test_a_needed_node_without_the_files_is_named_in_the_plan():
    model = shape()
    nodes = [node("a", 500), node("studio", 2000, files=False)]
    plan = plan_placement(model, nodes, "id-a", 0)
    assert isinstance(plan, ShardPlan)
    assert [s.name for s in plan.missing_files] == ["studio"]
    message = plan.missing_files_message()
    assert message is not None and "studio" in message and "org/model" in message


def test_refusal_names_every_nodes_shortfall():
    model = shape()  # 1110 MB
    nodes = [node("a", 400), node("b", 300), node("c", 200)]
    refused = plan_placement(model, nodes, "id-a", 0)
    assert isinstance(refused, PlacementRefused)
    assert {s.name for s in refused.shortfalls} == {"a", "b", "c"}
    needed = sum(s.needed_bytes for s in refused.shortfalls)
    assert needed == model.total_bytes
    short = sum(s.short_bytes for s in refused.shortfalls)
    assert short >= model.total_bytes - 900 * MB
    for name in ("a", "b", "c"):
        assert name in refused.message
    assert "org/model" in refused.message and "GiB" in refused.message


def test_refused_when_the_coordinator_is_unknown_or_has_no_room():
    model = shape()
    unknown = plan_placement(model, [node("a", 5000)], "id-zzz", 0)
    assert isinstance(unknown, PlacementRefused) and "coordinator" in unknown.reason
    full = plan_placement(model, [node("a", 10), node("b", 5000)], "id-a", 0)
    assert isinstance(full, PlacementRefused)
    assert any(s.name == "a" and s.short_bytes > 0 for s in full.shortfalls)


def test_never_more_stages_than_layers():
    model = ModelShape("m", (100 * MB, 100 * MB), 0, 0)
    nodes = [node("a", 90), node("b", 90), node("c", 90)]
    refused = plan_placement(model, nodes, "id-a", 0)
    assert isinstance(refused, PlacementRefused)
    assert len(refused.shortfalls) == 2


def test_a_tied_head_costs_the_last_stage_the_embeddings_again():
    model = shape(layers=4, layer_mb=100, embed_mb=200, head_mb=1, tied_embeddings=True)
    assert model.stage_bytes(0, 2, first=True, last=False) == 400 * MB
    assert model.stage_bytes(2, 4, first=False, last=True) == 401 * MB
    assert model.stage_bytes(0, 4, first=True, last=True) == model.total_bytes
    plan = plan_placement(model, [node("a", 420), node("b", 420)], "id-a", 0)
    assert isinstance(plan, ShardPlan)
    assert [s.bytes_needed for s in plan.stages] == [400 * MB, 401 * MB]


def test_the_head_goes_to_the_node_that_has_room_for_it():
    # The last stage carries a big head: only node "c" can hold it next to a layer.
    model = ModelShape("m", (100 * MB,) * 3, 0, 500 * MB)
    nodes = [node("a", 110), node("b", 700), node("c", 650)]
    plan = plan_placement(model, nodes, "id-a", 0)
    assert isinstance(plan, ShardPlan)
    check_plan(plan, model, "id-a")


def _brute_force_fewest(model: ModelShape, nodes: list[NodeCapacity], coordinator: str) -> int:
    """Fewest nodes of any valid plan (any subset, any order after the coordinator, any
    contiguous split), or 0 when none exists."""
    head = next(n for n in nodes if n.node_id == coordinator)
    others = [n for n in nodes if n.node_id != coordinator]
    for count in range(1, min(len(nodes), model.num_layers) + 1):
        for chosen in itertools.permutations(others, count - 1):
            group = [head, *chosen]
            for cuts in itertools.combinations(range(1, model.num_layers), count - 1):
                bounds = [0, *cuts, model.num_layers]
                if all(
                    model.stage_bytes(bounds[r], bounds[r + 1], first=r == 0, last=r == count - 1)
                    <= group[r].free_bytes
                    for r in range(count)
                ):
                    return count
    return 0


@pytest.mark.parametrize("seed", range(60))
def test_matches_a_brute_force_search(seed: int) -> None:
    rng = random.Random(seed)
    layers = rng.randint(1, 7)
    model = ModelShape(
        "m",
        tuple(rng.choice((10, 20, 30)) * MB for _ in range(layers)),
        rng.choice((0, 5, 40)) * MB,
        rng.choice((0, 5, 40)) * MB,
        rng.random() < 0.3,
    )
    nodes = [node(f"n{i}", rng.randint(5, 120), rng.random() < 0.8) for i in range(4)]
    result = plan_placement(model, nodes, "id-n0", 0)
    fewest = _brute_force_fewest(model, nodes, "id-n0")
    if fewest == 0:
        assert isinstance(result, PlacementRefused)
        assert result.shortfalls and any(s.short_bytes > 0 for s in result.shortfalls)
    else:
        assert isinstance(result, ShardPlan), result
        assert result.world_size == fewest
        check_plan(result, model, "id-n0")


def _write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], int]]) -> None:
    header, offset = {}, 0
    for name, (dtype, dims, size) in tensors.items():
        header[name] = {"dtype": dtype, "shape": dims, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)


def test_model_shape_from_headers_without_loading(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"num_hidden_layers": 2, "tie_word_embeddings": True})
    )
    _write_safetensors(
        tmp_path / "model-00001-of-00002.safetensors",
        {
            "model.embed_tokens.weight": ("F16", [10, 4], 80),
            "model.layers.0.mlp.up_proj.weight": ("F16", [4, 4], 32),
            "model.layers.0.mlp.up_proj.scales": ("F16", [4, 1], 8),
        },
    )
    _write_safetensors(
        tmp_path / "model-00002-of-00002.safetensors",
        {
            "model.layers.1.self_attn.q_proj.weight": ("F32", [4, 4], 64),
            "model.layers.2.mtp.weight": ("F32", [4, 4], 64),  # past the last layer: dropped
            "model.norm.weight": ("F32", [4], 16),
        },
    )
    assert safetensors_sizes(tmp_path / "model-00001-of-00002.safetensors") == {
        "model.embed_tokens.weight": 80,
        "model.layers.0.mlp.up_proj.weight": 32,
        "model.layers.0.mlp.up_proj.scales": 8,
    }
    got = model_shape(tmp_path, "org/x")
    assert got == ModelShape("org/x", (40, 64), 80, 16, True)


def test_model_shape_of_the_tiny_model(tiny_model_path: Path) -> None:
    got = model_shape(tiny_model_path, "tiny")
    assert got.num_layers == 2 and not got.tied_embeddings
    size = sum((tiny_model_path / f).stat().st_size for f in ["model.safetensors"])
    assert got.total_bytes < size < got.total_bytes + 64 * 1024  # all but the header
    assert got.total_bytes / GIB < 0.01
