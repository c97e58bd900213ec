"""Which weight files a stage of a sharded model needs, from the model's index (pure)."""

from __future__ import annotations

import json

from salut_tui.shard.weights import StageNeeds, covers, stage_files, tied_embeddings
from salut_tui.transfer.manifest import FileEntry, Manifest, parse_weight_map

F = [f"model-0000{i}-of-00004.safetensors" for i in range(1, 5)]
FILES = {*F, "config.json", "tokenizer.json", "model.safetensors.index.json"}


def layer(i: int, file: str) -> dict[str, str]:
    return {
        f"model.layers.{i}.self_attn.q_proj.weight": file,
        f"model.layers.{i}.mlp.down_proj.weight": file,
        f"model.layers.{i}.input_layernorm.weight": file,
    }


# 8 layers: embeddings in file 1 with layers 0-1, layers 2-4 in file 2, 5-6 in file 3; layer 7
# straddles files 3 and 4 (a tensor of it in each), the final norm and head in file 4.
MAP = {
    "model.embed_tokens.weight": F[0],
    **layer(0, F[0]), **layer(1, F[0]),
    **layer(2, F[1]), **layer(3, F[1]), **layer(4, F[1]),
    **layer(5, F[2]), **layer(6, F[2]),
    **layer(7, F[3]),
    "model.layers.7.mlp.down_proj.weight": F[2],
    "model.norm.weight": F[3],
    "lm_head.weight": F[3],
}  # fmt: skip
TIED_MAP = {k: v for k, v in MAP.items() if k != "lm_head.weight"}


def files(needs: StageNeeds, weight_map: dict | None = MAP, tied: bool = False) -> set[str]:
    return set(stage_files(weight_map, FILES, needs, 8, tied))


def test_the_first_stage_gets_the_embeddings_and_its_layers() -> None:
    assert files(StageNeeds(0, 2, first=True, last=False)) == {F[0]}
    assert files(StageNeeds(0, 3, first=True, last=False)) == {F[0], F[1]}


def test_a_middle_stage_gets_only_the_files_of_its_layers() -> None:
    assert files(StageNeeds(2, 5, first=False, last=False)) == {F[1]}
    assert files(StageNeeds(4, 6, first=False, last=False)) == {F[1], F[2]}


def test_the_last_stage_gets_the_head_and_norm_and_a_layer_split_over_two_files() -> None:
    assert files(StageNeeds(7, 8, first=False, last=True)) == {F[2], F[3]}
    assert files(StageNeeds(5, 8, first=False, last=True)) == {F[2], F[3]}


def test_a_tied_head_brings_the_embeddings_to_the_last_stage() -> None:
    assert files(StageNeeds(7, 8, first=False, last=True), TIED_MAP, tied=True) == {
        F[0], F[2], F[3],
    }  # fmt: skip
    assert files(StageNeeds(7, 8, first=False, last=True), TIED_MAP, tied=False) == {F[2], F[3]}
    config = {"tie_word_embeddings": True}
    assert tied_embeddings(config, TIED_MAP) and not tied_embeddings(config, MAP)
    assert tied_embeddings({}, TIED_MAP) and not tied_embeddings(
        {"tie_word_embeddings": False}, TIED_MAP
    )


def test_one_stage_alone_or_a_tensor_split_needs_everything() -> None:
    assert files(StageNeeds(0, 8, first=True, last=True)) == set(F)
    assert files(StageNeeds(2, 4, first=False, last=False, whole=True)) == set(F)


def test_extra_layers_beyond_the_count_go_to_the_last_stage() -> None:
    extra = {**MAP, "model.layers.8.eh_proj.weight": F[1]}  # multi-token prediction
    assert F[1] in set(stage_files(extra, FILES, StageNeeds(7, 8, False, True), 8, False))
    assert F[1] not in set(stage_files(extra, FILES, StageNeeds(0, 2, True, False), 8, False))


def test_without_a_usable_index_the_whole_model() -> None:
    assert files(StageNeeds(2, 4, False, False), None) == set(F)
    stray = {**MAP, "model.layers.3.extra.weight": "model-00009-of-00009.safetensors"}
    assert files(StageNeeds(2, 4, False, False), stray) == set(F)  # names a file not there
    assert parse_weight_map("not json") is None
    assert parse_weight_map(json.dumps({"metadata": {}})) is None
    assert parse_weight_map(json.dumps({"weight_map": {"a": "../x.safetensors"}})) is None
    assert parse_weight_map(json.dumps({"weight_map": {"a": "x.bin"}})) is None
    assert parse_weight_map(json.dumps({"weight_map": MAP})) == MAP


def test_a_partial_copy_covers_a_stage_only_with_all_of_its_files() -> None:
    middle = StageNeeds(4, 6, first=False, last=False)
    assert covers({F[1], F[2]}, MAP, middle, 8, False)
    assert not covers({F[1]}, MAP, middle, 8, False)
    assert not covers({F[1], F[2]}, None, middle, 8, False)


def test_a_manifest_subset_keeps_every_small_file_and_the_named_weights() -> None:
    entries = tuple(FileEntry(n, 1, "0" * 64) for n in sorted(FILES))
    manifest = Manifest("org/m", entries)
    names = {f.name for f in manifest.subset(frozenset({F[1]})).files}
    assert names == {F[1], "config.json", "tokenizer.json", "model.safetensors.index.json"}
