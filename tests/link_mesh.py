"""In-process nodes joined by real peer links (websocket, handshake, encryption): every pair
of nodes is paired and linked, as a cluster of paired nodes is. Each node serves its peers'
requests and tunnels with handlers the test sets (they get the caller's node id first)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from salut_tui.cluster.link import PeerLink
from salut_tui.cluster.link_handshake import LINK_PATH, accept, dial
from salut_tui.cluster.tunnel import Tunnel
from salut_tui.pairing.identity import Identity
from salut_tui.pairing.trust import TrustedPeer, TrustStore

Requests = Callable[[str, str, dict], AsyncIterator[bytes]]
Tunnels = Callable[[str, str, dict, Tunnel], Awaitable[None]]


async def _no_requests(peer: str, method: str, body: dict) -> AsyncIterator[bytes]:
    raise ValueError(f"no handler for {method}")
    yield b""


async def _no_tunnels(peer: str, method: str, body: dict, tunnel: Tunnel) -> None:
    raise ValueError(f"no tunnel handler for {method}")


@dataclass
class MeshNode:
    name: str
    identity: Identity
    trust: TrustStore
    links: dict[str, PeerLink] = field(default_factory=dict)  # peer node id -> link
    requests: Requests = _no_requests
    tunnels: Tunnels = _no_tunnels
    address: str = ""

    @property
    def node_id(self) -> str:
        return self.identity.node_id

    def make_link(self, ws, cipher, peer: TrustedPeer, initiator: bool) -> PeerLink:  # type: ignore[no-untyped-def]
        link = PeerLink(
            ws, cipher, peer=peer, initiator=initiator,
            handler=lambda m, b: self.requests(peer.node_id, m, b), state=dict,
            on_state=lambda lk, s: None, on_notice=lambda lk, b: None,
            tunnel_handler=lambda m, b, t: self.tunnels(peer.node_id, m, b, t),
        )  # fmt: skip
        self.links[peer.node_id] = link
        return link


class Mesh:
    def __init__(self, nodes: list[MeshNode]) -> None:
        self.nodes = nodes
        self._runners: list[web.AppRunner] = []
        self._session: aiohttp.ClientSession | None = None
        self._readers: list = []

    @classmethod
    async def build(cls, tmp_path: Path, names: list[str]) -> Mesh:
        import asyncio

        nodes = [
            MeshNode(name, Identity.generate(), TrustStore(tmp_path / f"trust-{name}"))
            for name in names
        ]
        mesh = cls(nodes)
        for node in nodes:
            await mesh._serve(node)
        for a in nodes:
            for b in nodes:
                if a is not b:
                    a.trust.add(b.identity.public_key, b.name, b.address)
        mesh._session = aiohttp.ClientSession()
        for i, a in enumerate(nodes):
            for b in nodes[i + 1 :]:
                peer = a.trust.get(b.node_id)
                assert peer is not None
                ws, cipher = await dial(mesh._session, a.identity, peer)
                link = a.make_link(ws, cipher, peer, True)
                mesh._readers.append(asyncio.create_task(link.run()))
        for _ in range(200):
            if all(len(n.links) == len(nodes) - 1 for n in nodes):
                return mesh
            await asyncio.sleep(0.01)
        raise RuntimeError("the mesh did not link up")

    async def _serve(self, node: MeshNode) -> None:
        async def link_route(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse(max_msg_size=1 << 24)
            await ws.prepare(request)
            cipher, peer = await accept(ws, node.identity, node.trust)
            await node.make_link(ws, cipher, peer, False).run()
            return ws

        app = web.Application()
        app.router.add_get(LINK_PATH, link_route)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        node.address = f"127.0.0.1:{port}"
        self._runners.append(runner)

    def link(self, a: MeshNode, b: MeshNode) -> PeerLink:
        return a.links[b.node_id]

    async def close(self) -> None:
        for node in self.nodes:
            for link in list(node.links.values()):
                await link.close()
        for reader in self._readers:
            reader.cancel()
        if self._session is not None:
            await self._session.close()
        for runner in self._runners:
            await runner.cleanup()
