"""A participant of a sharded plan without the model's files is offered a copy of only its
layers' weight files, in one process with two real nodes over a real peer link and real runner
subprocesses: A holds a 4-layer model saved in 3 weight files, B holds nothing.

- A's plan over A and B names B as lacking the files and what `--copy` would copy (layers 2-3:
  the second and third file, not the first); the load without the copy is refused in words.
- With the copy, exactly those files arrive on B (verified), into B's partial copies, never
  among B's models; B shows the copy on its own transfers board as it goes (kind "fetch"); then the sharded load serves the same greedy tokens as A alone.
- B tells A what it holds: the next plan needs no copy.
- The pull of named files alone: resumable, it never shows as a whole model, and it becomes
  whole when the rest arrives.
- `salut load MODEL` and `--shard` name the node without files and what `--copy` would copy;
  `--shard --copy` copies it (with a progress bar), then loads.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from salut_tui.cluster.pull import INCOMING, LOG_FILE, PullProgress, pull_model
from salut_tui.config import Settings
from salut_tui.engine.memory import estimate_model_bytes
from salut_tui.engine.types import Finish, GenerationRequest, ModelError, SamplingParams, Token
from salut_tui.events import TransferChanged
from salut_tui.node import Node
from salut_tui.transfer.partial import MARKER, PARTIAL, held_weights
from salut_tui.transfer.progress import human_bytes
from salut_tui.transfers import TransferView
from salut_tui.ui.widgets.progress_rows import transfer_title
from tests.helpers import until
from tests.model_factory import build_tiny_model
from tests.test_cluster_node import pair
from tests.test_load_cli import GIB, _cli
from tests.test_model_pull import make

pytestmark = pytest.mark.timeout(300)

MODEL = "salut-test/tiny-split"
FILES = [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
SMALL = {"config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
         "model.safetensors.index.json"}  # fmt: skip


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    a, b = make(tmp_path, "A"), make(tmp_path, "B")
    # Layers 0-1 and the embeddings in file 1, layer 2 in file 2, layer 3, norm, head in file 3.
    build_tiny_model(a.settings.models_path() / MODEL, num_layers=4, weight_files=3)
    await a.start()
    await b.start()
    await pair(a, b)
    yield a, b
    await a.stop()
    await b.stop()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def greedy(node: Node) -> list[int]:
    request = GenerationRequest(
        model=MODEL, prompt="hello", sampling=SamplingParams(temperature=0, max_tokens=12)
    )
    chunks = [c async for c in node.generate(request)]
    assert isinstance(chunks[-1], Finish), chunks[-1]
    return [c.token_id for c in chunks if isinstance(c, Token)]


async def test_b_gets_only_its_layers_files_then_serves_its_part(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    source = a.settings.models_path() / MODEL
    await a.load_model(MODEL)  # the reference: the whole model on one node
    alone = await greedy(a)
    await a.unload_model(MODEL)

    plan = a.shard_plan(MODEL, ["B"])
    assert [(s.name, s.layer_start, s.layer_end, s.has_model_files) for s in plan.stages] == [
        ("A", 0, 2, True), ("B", 2, 4, False),
    ]  # fmt: skip
    [offer] = plan.copies
    assert (offer.name, offer.files, offer.whole) == ("B", (FILES[1], FILES[2]), False)
    small = sum((source / f).stat().st_size for f in SMALL)
    assert offer.bytes == small + sum((source / f).stat().st_size for f in FILES[1:])
    message = plan.missing_files_message()
    assert message is not None and "--copy would copy B: " + FILES[1] in message
    with pytest.raises(ModelError) as refused:
        await a.load_sharded(MODEL, ["B"])
    assert refused.value.status == 409 and "--copy" in refused.value.message

    seen_on_b: list[TransferView] = []
    b.events.subscribe(
        lambda e: seen_on_b.append(e.view) if isinstance(e, TransferChanged) else None
    )
    await a.load_sharded(MODEL, ["B"], copy=True)
    partial = b.settings.models_path() / PARTIAL / "salut-test--tiny-split"
    arrived = {p.name for p in partial.iterdir()}
    assert arrived == {FILES[1], FILES[2], MARKER} | SMALL  # not the first file
    for name in arrived - {MARKER}:
        assert digest(partial / name) == digest(source / name), name
    assert b.registry.locate(MODEL) is None  # never a model of B's own
    assert MODEL not in {m.id for m in b.local_models()}
    [copy] = [t for t in a.transfers.all() if t.kind == "copy"]
    assert (copy.state, copy.source, copy.received) == ("done", "B", offer.bytes)
    # B shows the same copy on its own board, as it goes: from A, for sharding, then done.
    [fetch] = b.transfers.all()
    assert (fetch.kind, fetch.model, fetch.source) == ("fetch", MODEL, "A")
    assert (fetch.state, fetch.received, fetch.done, fetch.total) == (
        "done", offer.bytes, offer.bytes, offer.bytes,
    )  # fmt: skip
    assert fetch.message == str(partial)
    assert {v.id for v in seen_on_b} == {fetch.id}
    states = [v.state for v in seen_on_b]
    assert states[0] == "running" and states[-1] == "done" and states.count("done") == 1
    moving = [v.done for v in seen_on_b if v.state == "running" and v.total]
    assert moving and moving == sorted(moving) and moving[-1] == offer.bytes, moving
    assert transfer_title(fetch) == f"{MODEL} <- A (for sharding)"  # B's Models screen row
    assert transfer_title(copy) == f"{MODEL} -> B"

    sharded = await greedy(a)
    assert sharded == alone and len(sharded) > 0
    via_b = await greedy(b)  # B forwards to the coordinator
    assert via_b == alone

    await a.unload_sharded(MODEL)
    assert a.cluster is not None and b.cluster is not None
    await until(lambda: a.cluster.partial_weights(b.cluster.node_id, MODEL), 30)  # type: ignore[union-attr]
    again = a.shard_plan(MODEL, ["B"])
    assert again.copies == () and all(s.has_model_files for s in again.stages)


async def test_a_pull_of_named_files_resumes_and_becomes_whole(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    assert a.cluster is not None and b.cluster is not None
    link = b.cluster.linked_peer(a.cluster.node_id)
    root = b.settings.models_path()
    log = root / INCOMING / "salut-test--tiny-split" / LOG_FILE
    first = asyncio.ensure_future(
        pull_model(link, MODEL, root, files=frozenset({FILES[0]}), in_flight=1, piece_size=4096)
    )
    await until(lambda: log.exists() and log.read_text().count("\n") >= 2, 10, interval=0.001)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    progress: list[PullProgress] = []
    where = await pull_model(link, MODEL, root, progress.append, files=frozenset({FILES[0]}))
    assert where == root / PARTIAL / "salut-test--tiny-split"
    assert 0 < progress[-1].received < progress[-1].total  # resumed, not restarted
    assert held_weights(root, MODEL) == {FILES[0]}
    assert b.registry.locate(MODEL) is None and not (root / MODEL).exists()

    # A second file joins the first (still partial); then a whole pull takes both from the
    # partial copy and fetches only the third: the model is whole, the partial copy gone.
    where = await pull_model(link, MODEL, root, files=frozenset({FILES[1]}))
    assert where == root / PARTIAL / "salut-test--tiny-split"
    assert held_weights(root, MODEL) == {FILES[0], FILES[1]}
    progress.clear()
    where = await pull_model(link, MODEL, root, progress.append)
    assert where == root / MODEL and b.registry.locate(MODEL) == where
    assert not (root / PARTIAL / "salut-test--tiny-split").exists()
    source = a.settings.models_path() / MODEL
    assert {p.name: digest(p) for p in where.iterdir()} == {
        p.name: digest(p) for p in source.iterdir()
    }
    assert progress[-1].received == (source / FILES[2]).stat().st_size  # only the third


def limited_node(tmp: Path, name: str, limit_gb: float) -> Node:
    return Node(
        Settings(
            host="127.0.0.1", port=0, data_dir=str(tmp / name), node_name=name,
            default_model="salut-test/none", memory_headroom_gb=0, memory_limit_gb=limit_gb,
        )
    )  # fmt: skip


async def test_the_cli_names_the_files_then_copies_them_with_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = build_tiny_model(tmp_path / "model", num_layers=4, weight_files=3)
    limit_gb = estimate_model_bytes(model) * 0.7 / GIB  # neither node holds it whole
    a, b = limited_node(tmp_path, "A", limit_gb), limited_node(tmp_path, "B", limit_gb)
    shutil.copytree(model, a.settings.models_path() / MODEL)
    await a.start(preload=[])
    await b.start(preload=[])
    try:
        await pair(a, b)
        assert a.cluster is not None
        await until(
            lambda: any(
                v.name == "B" and v.vram_free is not None and v.vram_free <= limit_gb * GIB
                for v in a.cluster.peer_views()  # type: ignore[union-attr]
            ),
            10,
        )
        data = ["--data-dir", a.settings.data_dir]
        code, out, err = await _cli(["load", MODEL, *data], capsys)
        assert code == 1, out + err
        assert "rank 1  B" in out and "(lacks the files)" in out, out
        [offer] = [line for line in out.splitlines() if "--copy would copy" in line]
        assert "B lacks the files: --copy would copy only model-00002" in offer, offer
        assert FILES[2] in offer and FILES[0] not in offer and "with config and tokenizer" in offer
        assert f"salut load {MODEL} --shard --copy" in out

        code, out, err = await _cli(["load", MODEL, "--shard", *data], capsys)
        assert code == 1 and offer in out and "run again with --copy" in out, out + err
        assert not (b.settings.models_path() / PARTIAL).exists()  # nothing copied, nothing run

        code, out, err = await _cli(["load", MODEL, "--shard", "--copy", *data], capsys)
        assert code == 0, out + err
        assert f"{MODEL} -> B [" in err  # the copy's progress bar
        assert "copied only model-00002" in out and f"Loaded {MODEL} sharded over A, B" in out
        assert held_weights(b.settings.models_path(), MODEL) == {FILES[1], FILES[2]}
        code, out, err = await _cli(["models", "--data-dir", b.settings.data_dir], capsys)
        assert code == 0, out + err
        lines = out.splitlines()
        [row] = [i for i, line in enumerate(lines) if line.startswith(f"{MODEL} ")]
        assert ": A, B" in lines[row], lines[row]  # sharded (or starting): two ranks, the copy
        copy_dir = b.settings.models_path() / PARTIAL / "salut-test--tiny-split"
        size = sum(p.stat().st_size for p in copy_dir.iterdir() if p.name != MARKER)
        assert lines[row + 3] == (
            f"  partial copy here for sharding: files {FILES[1]}, {FILES[2]}, {human_bytes(size)}"
        ), lines[row : row + 4]
        code, out, err = await _cli(["unload", MODEL, *data], capsys)
        assert code == 0 and "(sharded: every node)" in out, out + err
    finally:
        await a.stop()
        await b.stop()
