"""The copy a sharded plan offers to the participants without the model's files (pure), and
the partial copies' bookkeeping on disk (what a node holds and tells its peers, what a pull
takes from it)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from salut_tui.cluster.pull import LOG_FILE, MANIFEST_FILE, _prepare
from salut_tui.shard.copies import copied, offer_copies
from salut_tui.shard.placement import ShardPlan, StageAssignment
from salut_tui.shard.service import plan_from_summary, plan_summary
from salut_tui.shard.weights import WeightLayout
from salut_tui.transfer.manifest import FileEntry, Manifest, TransferError
from salut_tui.transfer.partial import (
    MARKER,
    PARTIAL,
    clean_partials,
    held_weights,
    list_partials,
    partial_directory,
    write_marker,
)

F = [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
MB = 1_000_000
# 6 layers: embeddings + layers 0-1 in file 1, layers 2-3 in file 2, layers 4-5 + head in 3.
MAP = {
    "model.embed_tokens.weight": F[0],
    **{f"model.layers.{i}.mlp.weight": F[i // 2] for i in range(6)},
    "model.norm.weight": F[2],
    "lm_head.weight": F[2],
}
SIZES = {F[0]: 300 * MB, F[1]: 200 * MB, F[2]: 250 * MB, "config.json": 1000,
         "tokenizer.json": 9000, "model.safetensors.index.json": 2000}  # fmt: skip
LAYOUT = WeightLayout(SIZES, MAP, 6, tied=False)
SMALL = 12000


def plan(*stages: tuple[str, int, int, bool]) -> ShardPlan:
    return ShardPlan(
        "org/m", 6,
        tuple(
            StageAssignment(rank, f"id-{name}", name, start, end, 1, 2, has)
            for rank, (name, start, end, has) in enumerate(stages)
        ),
    )  # fmt: skip


def test_a_node_without_files_is_offered_only_its_layers_files() -> None:
    offered = offer_copies(
        plan(("a", 0, 2, True), ("b", 2, 4, False), ("c", 4, 6, False)), LAYOUT, {}
    )
    b, c = offered.copies
    assert (b.name, b.files, b.bytes, b.whole) == ("b", (F[1],), 200 * MB + SMALL, False)
    assert (c.name, c.files, c.bytes, c.whole) == ("c", (F[2],), 250 * MB + SMALL, False)
    assert b.describe() == f"b: {F[1]} (200.0 MB)"
    message = offered.missing_files_message()
    assert message is not None and message.startswith("the model 'org/m' is not on b, c")
    assert f"--copy would copy b: {F[1]} (200.0 MB); c: {F[2]} (250.0 MB)" in message


def test_a_stage_across_files_the_first_one_and_a_tensor_split() -> None:
    offered = offer_copies(plan(("b", 0, 3, False), ("a", 3, 6, True)), LAYOUT, {})
    assert offered.copies[0].files == (F[0], F[1])  # the embeddings and layers 0-2
    tensor = offer_copies(plan(("a", 0, 6, True), ("b", 0, 6, False)), LAYOUT, {}, "tensor")
    assert tensor.copies[0].whole and tensor.copies[0].files == tuple(F)
    assert "the whole model" in tensor.copies[0].describe()
    no_index = WeightLayout(SIZES, None, 6, tied=False)
    assert offer_copies(plan(("a", 0, 3, True), ("b", 3, 6, False)), no_index, {}).copies[0].whole


def test_what_a_partial_copy_holds_is_not_copied_again() -> None:
    two = plan(("a", 0, 4, True), ("b", 4, 6, False))
    covered = offer_copies(two, LAYOUT, {"id-b": frozenset({F[2]})})
    assert covered.copies == () and covered.missing_files == ()
    more = offer_copies(
        plan(("a", 0, 2, True), ("b", 2, 6, False)), LAYOUT, {"id-b": frozenset({F[2]})}
    )
    assert more.copies[0].files == (F[1],) and more.copies[0].bytes == 200 * MB + SMALL


def test_a_carried_out_copy_serves_its_stage_and_the_summary_round_trips() -> None:
    offered = offer_copies(plan(("a", 0, 2, True), ("b", 2, 6, False)), LAYOUT, {})
    assert plan_from_summary(json.loads(json.dumps(plan_summary(offered)))) == offered
    done = copied(offered, offered.copies[0])
    assert done.copies == () and done.missing_files_message() is None


def marker(directory: Path, model: str, names: list[str]) -> None:
    directory.mkdir(parents=True)
    entries = []
    for name in names:
        (directory / name).write_bytes(b"x" * 10)
        entries.append(FileEntry(name, 10, "0" * 64))
    write_marker(directory, Manifest(model, tuple(entries)))


def test_partial_copies_on_disk_and_as_peers_tell_them(tmp_path: Path) -> None:
    root = tmp_path / "models"
    marker(partial_directory(root, "org/m"), "org/m", ["config.json", F[1], F[2]])
    (partial_directory(root, "org/m") / F[2]).write_bytes(b"short")  # damaged: not held
    marker(root / PARTIAL / "junk", "x/y", ["config.json", F[0]])  # not an org--name directory
    (root / PARTIAL / "org--empty").mkdir()  # no marker: not a partial copy
    assert held_weights(root, "org/m") == {F[1]}
    assert held_weights(root, "org/none") == frozenset()
    assert list_partials(root) == {"org/m": [F[1]]}
    assert (partial_directory(root, "org/m") / MARKER).is_file()
    with pytest.raises(TransferError):
        partial_directory(root, "../m")
    told = {"org/m": [F[1], "config.json"], "../x": [F[0]], "org/n": ["../../etc/passwd"]}
    assert clean_partials(told) == {"org/m": [F[1]]}
    assert clean_partials("nonsense") == {} and clean_partials({"org/m": "x"}) == {}


def test_a_subset_names_only_files_the_model_has() -> None:
    manifest = Manifest("org/m", (FileEntry("config.json", 1, "0" * 64),))
    with pytest.raises(TransferError, match="has no file"):
        manifest.subset(frozenset({F[0]}))


def test_a_pull_takes_what_the_partial_copy_holds_over_an_earlier_attempts_pieces(
    tmp_path: Path,
) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    entries = []
    for name, body in (("config.json", b"{}"), (F[0], b"w" * 100), (F[1], b"v" * 50)):
        (partial / name).write_bytes(body)
        entries.append(FileEntry(name, len(body), hashlib.sha256(body).hexdigest()))
    held = Manifest("org/m", tuple(entries[:2]))  # F[1] is there but not in the marker
    write_marker(partial, held)
    manifest = Manifest("org/m", tuple(entries))
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / f"{F[0]}.part").write_bytes(b"x" * 10)  # an earlier attempt's piece of F[0]
    (staging / MANIFEST_FILE).write_text(json.dumps(manifest.to_json()))
    (staging / LOG_FILE).write_text(f"0 {F[0]}\n")
    (staging / "config.json").write_bytes(b"[]")  # same size, not the same file
    state, pieces = _prepare(staging, manifest, 64, partial)
    assert state.verified == {"config.json", F[0]} and not state.done
    assert [(p.name, p.index) for p in pieces] == [(F[1], 0)]  # only what the marker lacks
    assert sorted(p.name for p in staging.iterdir()) == sorted(
        ["config.json", F[0], MANIFEST_FILE, LOG_FILE]
    )
    assert (staging / "config.json").read_bytes() == b"{}"  # the partial copy's, verified
