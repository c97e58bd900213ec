"""`salut load MODEL` against two in-process paired nodes, each with a memory limit below the
model's size but together above it: the whole load is refused for memory and the answer is the
sharded plan the node's placement proposes (exit 1, nothing loaded); with `--shard` and the
`salut shard load` alias it loads split; `salut unload` ends it on both nodes, from the
participant too, right after the load."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from salut_tui.cli import main
from salut_tui.config import Settings
from salut_tui.engine.memory import estimate_model_bytes
from salut_tui.engine.types import GenerationRequest, SamplingParams
from salut_tui.node import Node
from salut_tui.routing import Sharded, decide
from tests.helpers import until
from tests.test_cluster_node import pair

GIB = 1024**3


def small_node(tmp: Path, name: str, model: Path) -> Node:
    limit_gb = estimate_model_bytes(model) * 0.7 / GIB  # 70% of the model: two of them fit it
    return Node(
        Settings(
            host="127.0.0.1", port=0, data_dir=str(tmp / name), node_name=name,
            models={"tiny": str(model)}, default_model="salut-test/none",
            memory_headroom_gb=0, memory_limit_gb=limit_gb,
        )
    )  # fmt: skip


@pytest.fixture
async def small_pair(tmp_path: Path, tiny_model_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    a, b = small_node(tmp_path, "A", tiny_model_path), small_node(tmp_path, "B", tiny_model_path)
    await a.start(preload=[])
    await b.start(preload=[])
    await pair(a, b)
    yield a, b
    await a.stop()
    await b.stop()


def _limit(node: Node) -> int:
    return int(node.settings.memory_limit_gb * GIB)


async def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, args)
    out, err = capsys.readouterr()
    return code, out, err


async def test_a_load_too_big_for_any_node_proposes_the_sharded_plan(
    small_pair: tuple[Node, Node], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = small_pair
    assert a.stats().memory_available <= _limit(a)  # the limit caps what the node counts free
    assert a.cluster is not None
    await until(
        lambda: any(
            v.name == "B" and v.vram_free is not None and v.vram_free <= _limit(b)
            for v in a.cluster.peer_views()  # type: ignore[union-attr]
        ),
        10,
    )
    data = ["--data-dir", a.settings.data_dir]
    code, out, err = await _cli(["load", "tiny", *data], capsys)
    assert code == 1, out + err
    assert "needs about" in err and "GiB" in err and "fits whole" not in out
    assert (
        "does not fit on this node, but it fits split" in out
        and "rank 0  A" in out
        and "rank 1  B" in out
    ), out
    assert "run again with --shard to load it split" in out
    assert not [m for m in a.models() if m.id == "tiny" and (m.loaded or m.shard)]

    code, out, err = await _cli(["load", "tiny", "--shard", *data], capsys)
    assert code == 0, out + err
    assert "rank 0  A" in out and "rank 1  B" in out and "Loaded tiny sharded over A, B" in out
    assert b.cluster is not None  # B knows who coordinates it from its join order
    assert b.cluster.shard_coordinator("tiny") == a.cluster.node_id
    code, out, err = await _cli(["unload", "tiny", "--data-dir", b.settings.data_dir], capsys)
    assert code == 0 and "(sharded: every node)" in out, out + err  # from the participant
    await until(lambda: not [m for m in a.models() if m.id == "tiny" and m.loaded], 10)

    code, out, err = await _cli(["shard", "load", "tiny", *data], capsys)  # the alias
    assert code == 0 and "Loaded tiny sharded over A, B" in out, out + err
    code, out, err = await _cli(["unload", "tiny", *data], capsys)
    assert code == 0 and "(sharded: every node)" in out, out + err


async def test_no_proposal_when_the_refusal_is_not_for_memory(
    small_pair: tuple[Node, Node], capsys: pytest.CaptureFixture[str]
) -> None:
    a, _ = small_pair
    code, out, err = await _cli(["load", "nope/none", "--data-dir", a.settings.data_dir], capsys)
    assert code == 1 and "--shard" not in out, out + err


async def test_a_participant_can_unload_right_after_the_load(
    small_pair: tuple[Node, Node],
) -> None:
    """The participant knows the instance from its join order, not from the coordinator's next
    state (up to a second later): nothing is awaited between the load's end and the checks."""
    a, b = small_pair
    assert a.shards is not None and b.shards is not None
    assert a.cluster is not None and b.cluster is not None
    await until(
        lambda: any(
            v.name == "B" and v.vram_free is not None and v.vram_free <= _limit(b)
            for v in a.cluster.peer_views()  # type: ignore[union-attr]
        ),
        10,
    )
    plan = await a.shards.load("tiny")
    assert [s.name for s in plan.stages] == ["A", "B"]
    a_id = a.cluster.node_id
    assert b.cluster.shard_coordinator("tiny") == a_id
    request = GenerationRequest(model="tiny", prompt="hi", sampling=SamplingParams(max_tokens=2))
    assert decide(b.route_facts(request)) == Sharded(a_id)  # not a whole load here (507)
    unloaded = await b.shards.unload("tiny")  # what `salut unload tiny` on B runs
    assert len(unloaded) == 1, unloaded
    managers = (a.shards.service.manager, b.shards.service.manager)
    await until(lambda: not any(m.instances for m in managers), 10, what="every part ended")
