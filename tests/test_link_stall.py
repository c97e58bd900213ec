"""A link whose network stalls without a reset (a cable pulled, a NAT that drops state): both
ends stop hearing each other and the sender's socket buffers fill, so its sends block. The
link's tick bounds its own sends (`DEAD_AFTER`), so the link is closed and the peer marked
unreachable even then; the dialer then links again. Two in-process nodes, linked through a TCP
relay on 127.0.0.1 that the test freezes (it stops reading both ways and never closes)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from salut_tui.cluster.cluster import Cluster
from salut_tui.cluster.frames import Kind
from salut_tui.cluster.link import LinkLost, PeerLink
from salut_tui.cluster.link_handshake import dial
from salut_tui.events import PeersChanged
from salut_tui.node import Node
from tests.helpers import until
from tests.test_cluster_node import make, pair

BOUND = 20.0  # seconds: generous on a loaded machine (the link allows itself ~3 s + a tick)


class FreezingRelay:
    """Forwards TCP to `target` until `freeze()`: then it reads nothing more, either way, and
    closes nothing, as a network that silently drops everything would."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.frozen = asyncio.Event()
        self.address = ""
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._pumps: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.address = f"127.0.0.1:{port}"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            pump = asyncio.ensure_future(self._pump(src, dst))
            self._pumps.add(pump)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while not self.frozen.is_set():
                data = await src.read(65536)
                if not data or self.frozen.is_set():
                    return
                dst.write(data)
                await dst.drain()

    def freeze(self) -> None:
        self.frozen.set()
        for pump in self._pumps:
            pump.cancel()

    async def close(self) -> None:
        self.freeze()
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()


@pytest.fixture
async def pair_ab(tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    a, b = make(tmp_path, "A", mode="client-only"), make(tmp_path, "B", mode="client-only")
    await a.start()
    await b.start()
    await pair(a, b)
    yield a, b
    await a.stop()
    await b.stop()


def _link(of: Cluster, to: Cluster) -> PeerLink | None:
    record = of.table.get(to.node_id)
    return record.link if record is not None else None


async def test_a_stalled_link_is_closed_and_its_peer_marked_unreachable(
    pair_ab: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    # The smaller id dials the relayed link, so both ends keep it (the crossed-links rule).
    x, y = sorted(pair_ab, key=lambda n: n.cluster.node_id)  # type: ignore[union-attr]
    sender, peer_node = x.cluster, y.cluster
    assert sender is not None and peer_node is not None and sender.linker.session is not None
    relay = FreezingRelay(("127.0.0.1", y.port))
    await relay.start()
    trusted = sender.trust.get(peer_node.node_id)
    assert trusted is not None
    ws, cipher = await dial(sender.linker.session, sender.identity, trusted, relay.address)
    link = sender._make_link(ws, cipher, trusted, True)
    sender._tasks.spawn(sender.linker.run_link(link), name="the relayed link")
    await until(
        lambda: _link(sender, peer_node) is link and _link(peer_node, sender) is not None,
        what="the relayed link in use on both ends",
    )
    await until(lambda: link.rtt is not None, what="a PONG through the relay")

    unreachable: list[float] = []
    x.events.subscribe(
        lambda e: (
            unreachable.append(time.monotonic())
            if isinstance(e, PeersChanged) and e.reason == f"{y.cluster.name} unreachable"  # type: ignore[union-attr]
            else None
        )
    )

    async def big_reply() -> None:  # a large answer in flight: it fills the socket buffers
        with contextlib.suppress(LinkLost, ConnectionError):
            while True:
                await link.send(Kind.DATA, 1_000_001, bytes(16_000))

    caplog.set_level(logging.WARNING, logger="salut_tui.cluster.link")
    relay.freeze()
    frozen_at = time.monotonic()
    filler = asyncio.ensure_future(big_reply())
    try:
        await until(lambda: link.closed and unreachable, BOUND, what="the stalled link closed")
        assert unreachable[0] - frozen_at < BOUND
        assert any("stalled" in r.getMessage() for r in caplog.records), caplog.text
        # The dialer links again (directly: the relay was never a proven address).
        await until(
            lambda: (r := sender.table.get(peer_node.node_id)) is not None and r.health == "ok",
            BOUND,
            what="linked again",
        )
    finally:
        filler.cancel()
        await relay.close()
