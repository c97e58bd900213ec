"""A rank that holds only its layers' weight files (a partial copy, as `salut load --shard
--copy` leaves on a participant) loads them alone and answers token for token what one node
answers with the whole model; a partial copy without its layers' file is refused in words."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from salut_tui.shard.pipeline import absent_weight_files
from salut_tui.shard.protocol import Fatal
from salut_tui.shard.shape import weight_layout
from salut_tui.shard.weights import StageNeeds, has_head
from salut_tui.transfer.manifest import is_weight_file
from tests.model_factory import build_tiny_model
from tests.shard_helpers import Cluster
from tests.test_shard_runner import MODEL, assert_matches, chat, single_node

LAYERS = 4


@pytest.fixture(scope="module")
def split_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 layers in 2 files: embeddings + layers 0-1, then layers 2-3 + norm + head."""
    return build_tiny_model(tmp_path_factory.mktemp("split"), num_layers=LAYERS, weight_files=2)


def partial_copy(model: Path, target: Path, weights: set[str]) -> Path:
    target.mkdir(parents=True)
    for file in model.iterdir():
        if not is_weight_file(file.name) or file.name in weights:
            shutil.copy2(file, target / file.name)
    return target


def test_the_last_rank_loads_from_its_own_file_alone(split_llama: Path, tmp_path: Path) -> None:
    last = "model-00002-of-00002.safetensors"
    partial = partial_copy(split_llama, tmp_path / "partial", {last})
    assert absent_weight_files(partial) == {"model-00001-of-00002.safetensors"}
    requests = [chat("Hello", 16), chat("Numbers: 0 1 2 3", 12)]
    expected = single_node(split_llama, tmp_path / "one", requests)
    cluster = Cluster(tmp_path / "ring", split_llama, MODEL, 2, LAYERS, model_paths={1: partial})
    try:
        ready = cluster.wait_ready()
        assert [r.layers for r in ready] == [(0, 2), (2, 4)]
        assert_matches(cluster, requests, expected)
    finally:
        cluster.close()


def test_a_partial_copy_without_its_layers_is_refused(split_llama: Path, tmp_path: Path) -> None:
    first = "model-00001-of-00002.safetensors"
    partial = partial_copy(split_llama, tmp_path / "partial", {first})
    cluster = Cluster(tmp_path / "ring", split_llama, MODEL, 2, LAYERS, model_paths={1: partial})
    try:
        fatal = cluster.runners[1].wait_for(Fatal, 90.0)
        assert isinstance(fatal, Fatal)
        assert "partial copy of the model lacks" in fatal.message
        assert "layers [2, 4)" in fatal.message
    finally:
        cluster.close()


def test_a_tied_head_makes_the_last_rank_need_the_embeddings_file(tmp_path: Path) -> None:
    """6 layers in 3 files over 3 ranks: the last rank (layers 4-5) needs its own file and,
    the head being the embeddings, the first one; never the middle one."""
    model = build_tiny_model(tmp_path / "tied", num_layers=6, weight_files=3, tied=True)
    f1, f2, f3 = (f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3))
    layout = weight_layout(model)
    assert layout.tied and layout.weight_map is not None and not has_head(layout.weight_map)
    assert layout.files_for(StageNeeds(4, 6, first=False, last=True)) == {f1, f3}
    assert layout.files_for(StageNeeds(2, 4, first=False, last=False)) == {f2}

    requests = [chat("Hello", 12)]
    expected = single_node(model, tmp_path / "one", requests)
    paths = {
        1: partial_copy(model, tmp_path / "p1", {f2}),
        2: partial_copy(model, tmp_path / "p2", {f1, f3}),
    }
    cluster = Cluster(tmp_path / "ring", model, MODEL, 3, 6, model_paths=paths)
    try:
        assert [r.layers for r in cluster.wait_ready()] == [(0, 2), (2, 4), (4, 6)]
        assert_matches(cluster, requests, expected)
    finally:
        cluster.close()

    headless = {2: partial_copy(model, tmp_path / "p3", {f3})}  # no embeddings for the head
    cluster = Cluster(tmp_path / "ring2", model, MODEL, 3, 6, model_paths=headless)
    try:
        fatal = cluster.runners[2].wait_for(Fatal, 90.0)
        assert isinstance(fatal, Fatal) and "lacks model.embed_tokens.weight" in fatal.message
    finally:
        cluster.close()
