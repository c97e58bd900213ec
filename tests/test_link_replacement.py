"""A link replaced while it carries a stream (two links crossed, or the peer re-linked): the
replaced link drains. Two in-process nodes with the real engine and the tiny model; B's engine
is held between two decode steps so that the replacement surely lands mid-stream."""

from __future__ import annotations

import asyncio
import threading

from salut_tui.cluster.cluster import Cluster
from salut_tui.cluster.link import LinkLost, PeerLink
from salut_tui.engine.types import Token
from salut_tui.node import Node
from tests.helpers import until
from tests.test_cluster_node import greedy, nodes  # noqa: F401  (the fixture)

TOKENS = 300  # long enough that B is still generating when A has its first token


def _link(of: Cluster, to: Cluster) -> PeerLink:
    record = of.table.get(to.node_id)
    assert record is not None and record.link is not None
    return record.link


async def _relink(x: Cluster, y: Cluster) -> None:
    """The node with the smaller id dials again: both ends keep that new link (the rule for
    crossed links), so the one in use is replaced on both ends."""
    smaller, other = sorted((x, y), key=lambda c: c.node_id)
    peer = smaller.trust.get(other.node_id)
    assert peer is not None
    smaller._tasks.spawn(smaller.linker.dial(peer), name="a second link")


async def test_a_stream_on_a_replaced_link_finishes_with_every_token(
    nodes: tuple[Node, Node],  # noqa: F811
) -> None:
    a, b = nodes
    assert a.cluster is not None and b.cluster is not None and b.engine is not None
    reference = [c async for c in b.generate(greedy(TOKENS))]
    assert len(reference) > 20

    chunks = a.generate(greedy(TOKENS))
    first = await chunks.__anext__()
    assert isinstance(first, Token)
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:  # on B's MLX thread, between two decode steps
        entered.set()
        release.wait(30)

    held = asyncio.ensure_future(b.engine.run_on_mlx_thread(hold))
    try:
        await until(entered.is_set, what="B's engine held")
        old_a, old_b = _link(a.cluster, b.cluster), _link(b.cluster, a.cluster)
        assert old_b._serving, "the stream must still be in flight on B"
        await _relink(a.cluster, b.cluster)
        await until(
            lambda: (
                _link(a.cluster, b.cluster) is not old_a
                and _link(b.cluster, a.cluster) is not old_b
            ),
            what="the new link attached on both ends",
        )
        assert old_a.draining and old_b.draining and not old_a.closed and not old_b.closed
        with_new = _link(a.cluster, b.cluster)
        assert not with_new.draining
        try:
            await old_a.open("generate", {})
            raise AssertionError("a draining link opened a stream")
        except LinkLost:
            pass
    finally:
        release.set()
        await held

    rest = [c async for c in chunks]
    assert [first, *rest] == reference  # every token, then the finish: nothing was cut
    # Done with its stream, each replaced link closes; the peer stays linked by the new one.
    await until(lambda: old_a.closed and old_b.closed, 10, what="the replaced links closed")
    assert _link(a.cluster, b.cluster) is with_new and not with_new.closed
    assert [c async for c in a.generate(greedy(12))] == [c async for c in b.generate(greedy(12))]
    assert a.cluster.table.get(b.cluster.node_id).health == "ok"  # type: ignore[union-attr]
