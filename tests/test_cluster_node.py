"""Cluster nodes in one process with the real engine and the tiny model: pairing through the
Cluster API the UI uses, proxied generation through `Node.generate`, cancel reaching the peer's
engine, client-only mode, the merged model list, and unpairing from either side."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from salut_tui.config import Settings
from salut_tui.engine.types import Error, Finish, GenerationRequest, SamplingParams, Token
from salut_tui.events import Event, PeersChanged, StreamFinished
from salut_tui.node import Node
from tests.helpers import until


def make(tmp: Path, name: str, models: dict[str, str] | None = None, mode: str = "cluster") -> Node:
    return Node(
        Settings(
            host="127.0.0.1",
            port=0,
            data_dir=str(tmp / name),
            node_name=name,
            models=models or {},
            mode=mode,
        )
    )  # type: ignore[arg-type]


async def pair(a: Node, b: Node) -> None:
    """B joins A with A's code, then both wait for a healthy link."""
    assert a.cluster is not None and b.cluster is not None
    code = a.cluster.create_pairing_code().code
    assert code is not None
    await b.cluster.join(f"127.0.0.1:{a.port}", code)
    for x, y in ((a, b), (b, a)):
        await until(
            lambda x=x, y=y: (
                (r := x.cluster.table.get(y.cluster.node_id)) is not None and r.health == "ok"
            )
        )


@pytest.fixture
async def nodes(tmp_path: Path, tiny_model_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    a, b = make(tmp_path, "A"), make(tmp_path, "B", {"tiny-b": str(tiny_model_path)})
    await a.start()
    await b.start(preload=["tiny-b"])
    await until(lambda: b.engine is not None and b.engine.is_loaded("tiny-b"))
    await pair(a, b)
    yield a, b
    await a.stop()
    await b.stop()


def greedy(max_tokens: int) -> GenerationRequest:
    return GenerationRequest(
        model="tiny-b",
        prompt="hello",
        sampling=SamplingParams(temperature=0, max_tokens=max_tokens),
    )


async def test_a_serves_bs_model_through_the_link(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    via_a = [c async for c in a.generate(greedy(12))]
    direct = [c async for c in b.generate(greedy(12))]
    assert via_a == direct and isinstance(via_a[-1], Finish) and len(via_a) == 13
    ids = {m.id: m for m in a.models()}
    assert ids["tiny-b"].owned_by == "B" and ids["tiny-b"].nodes == ("B",)
    b_id = b.cluster.node_id  # type: ignore[union-attr]
    await until(lambda: a.cluster.table.get(b_id).link.rtt is not None)  # type: ignore[union-attr]  # first PONG
    info = a.cluster_view()
    assert info.node.id == a.cluster.node_id  # type: ignore[union-attr]
    (peer,) = [p for p in info.peers if p.id == b_id]
    assert peer.name == "B" and peer.paired and peer.health == "ok"
    assert peer.loaded_models == ("tiny-b",) and peer.vram_total and peer.vram_total > 0
    assert peer.latency_ms is not None and 0 < peer.latency_ms < 1000


async def test_closing_the_stream_on_a_cancels_it_on_b(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    finished: list[StreamFinished] = []
    b.events.subscribe(lambda e: finished.append(e) if isinstance(e, StreamFinished) else None)
    chunks = a.generate(greedy(400))
    got = [await chunks.__anext__(), await chunks.__anext__()]
    assert all(isinstance(c, Token) for c in got)
    await chunks.aclose()
    await until(lambda: bool(finished), 3)
    assert finished[0].finish_reason == "cancelled" and finished[0].completion_tokens < 400
    await until(lambda: b.stats().in_flight == 0, 2)


async def test_unknown_model_is_not_bounced_around(nodes: tuple[Node, Node]) -> None:
    a, _ = nodes
    (chunk,) = [c async for c in a.generate(GenerationRequest(model="nowhere", prompt="x"))]
    assert isinstance(chunk, Error) and chunk.status == 404


async def test_unpair_from_one_side_removes_trust_on_both(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    changes: list[Event] = []
    a.events.subscribe(lambda e: changes.append(e) if isinstance(e, PeersChanged) else None)
    removed = await b.cluster.unpair(a.cluster.node_id)  # type: ignore[union-attr]
    assert removed is not None and removed.name == "A"
    await until(lambda: b.cluster.node_id not in a.cluster.trust)  # type: ignore[union-attr]
    assert a.cluster.node_id not in b.cluster.trust  # type: ignore[union-attr]
    assert any(e.reason == "unpaired" for e in changes)  # type: ignore[attr-defined]
    await asyncio.sleep(1.0)  # the dialers must not bring the link back
    assert not any(r.linked for r in a.cluster.peers())  # type: ignore[union-attr]
    (chunk,) = [c async for c in a.generate(greedy(3))]
    assert isinstance(chunk, Error) and chunk.status == 404


async def test_client_only_node_forwards_everything(
    tmp_path: Path, nodes: tuple[Node, Node]
) -> None:
    _, b = nodes
    client = make(tmp_path, "D", mode="client-only")
    await client.start()
    try:
        assert client.engine is None
        await pair(b, client)
        out = [c async for c in client.generate(greedy(5))]
        assert len(out) == 6 and isinstance(out[-1], Finish)
        assert [m.id for m in client.models() if m.loaded] == ["tiny-b"]
    finally:
        await client.stop()


async def test_solo_node_has_no_cluster(tmp_path: Path) -> None:
    solo = make(tmp_path, "S", mode="solo")
    assert solo.cluster is None
    assert not (tmp_path / "S" / "identity.key").exists()


async def test_unpairing_an_offline_peer_reaches_it_when_it_returns(
    tmp_path: Path, nodes: tuple[Node, Node]
) -> None:
    a, b = nodes
    b_id, a_id = b.cluster.node_id, a.cluster.node_id  # type: ignore[union-attr]
    await b.stop()
    await until(lambda: a.cluster.table.get(b_id).health == "unreachable")  # type: ignore[union-attr]
    assert await a.cluster.unpair(b_id) is not None  # type: ignore[union-attr]
    back = make(tmp_path, "B")  # same data dir: same identity, still trusting A
    assert a_id in back.cluster.trust  # type: ignore[union-attr]
    await back.start()
    try:
        # B dials A, A refuses with a refusal signed by A's key, and B drops A as well.
        await until(lambda: a_id not in back.cluster.trust)  # type: ignore[union-attr]
        assert not any(r.linked for r in (*back.cluster.peers(), *a.cluster.peers()))  # type: ignore[union-attr]
    finally:
        await back.stop()
