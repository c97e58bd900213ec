"""A rank that holds only its layers' weight files (a partial copy, as `salut load --shard
--copy` leaves on a participant) loads them alone and answers token for token what one node
answers with the whole model; a partial copy without its layers' file is refused in words."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from salut_tui.shard.pipeline import absent_weight_files
from salut_tui.shard.protocol import Fatal
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
