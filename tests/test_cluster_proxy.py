"""Proxying over real peer links: chunks relayed in order, failover before the first token,
an error (never a hang) when the peer dies mid-stream, and cancel reaching the peer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from salut_tui.cluster.link import PeerLink
from salut_tui.cluster.link_handshake import LINK_PATH, accept, dial
from salut_tui.cluster.proxy import GENERATE, generate_remote
from salut_tui.cluster.wire import chunk_to_bytes, request_from_json
from salut_tui.engine.types import Error, Finish, GenerationRequest, Token, Usage
from salut_tui.pairing.identity import Identity
from salut_tui.pairing.trust import TrustStore

Serve = Callable[[GenerationRequest, PeerLink], AsyncIterator[object]]


class Peers:
    """Real aiohttp peers on 127.0.0.1, each serving `generate` with a given behaviour."""

    def __init__(
        self, root: Path, start_server: Callable[[web.Application], Awaitable[Any]]
    ) -> None:
        self.root = root
        self.start_server = start_server  # pytest-aiohttp's aiohttp_server: it closes them
        self.me = Identity.generate()
        self.my_trust = TrustStore(root / "me")
        self.session = aiohttp.ClientSession()
        self.server_links: list[PeerLink] = []
        self.client_tasks: list[asyncio.Task] = []

    async def add(self, name: str, serve: Serve) -> PeerLink:
        identity, trust = Identity.generate(), TrustStore(self.root / name)
        trust.add(self.me.public_key, "me", "127.0.0.1:1")

        async def route(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            cipher, peer = await accept(ws, identity, trust)
            link: PeerLink

            def handler(method: str, body: dict) -> AsyncIterator[bytes]:
                assert method == GENERATE
                return _encode(serve(request_from_json(body), link))

            link = PeerLink(ws, cipher, peer=peer, initiator=False, handler=handler, state=dict,
                            on_state=lambda lk, s: None, on_notice=lambda lk, b: None)  # fmt: skip
            self.server_links.append(link)
            await link.run()
            return ws

        app = web.Application()
        app.router.add_get(LINK_PATH, route)
        server = await self.start_server(app)
        peer = self.my_trust.add(identity.public_key, name, f"127.0.0.1:{server.port}")
        ws, cipher = await dial(self.session, self.me, peer)
        link = PeerLink(ws, cipher, peer=peer, initiator=True, handler=_nothing, state=dict,
                        on_state=lambda lk, s: None, on_notice=lambda lk, b: None)  # fmt: skip
        self.client_tasks.append(asyncio.create_task(link.run()))
        return link

    async def close(self) -> None:
        for task in self.client_tasks:
            task.cancel()
        await self.session.close()


async def _encode(chunks: AsyncIterator[object]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield chunk_to_bytes(chunk)  # type: ignore[arg-type]


def _nothing(method: str, body: dict) -> AsyncIterator[bytes]:
    raise ValueError("the requester serves nothing in these tests")


@pytest.fixture
async def peers(tmp_path: Path, aiohttp_server) -> AsyncIterator[Peers]:  # type: ignore[no-untyped-def]
    net = Peers(tmp_path, aiohttp_server)
    yield net
    await net.close()


def words(n: int, delay: float = 0.0) -> Serve:
    async def serve(request: GenerationRequest, link: PeerLink) -> AsyncIterator[object]:
        for i in range(n):
            await asyncio.sleep(delay)
            yield Token(f"w{i} ", i)
        yield Finish("length", Usage(3, n))

    return serve


async def not_loaded(request: GenerationRequest, link: PeerLink) -> AsyncIterator[object]:
    yield Error(f"model '{request.model}' is not loaded", code="model_not_found", status=404)


def dies_after(n: int) -> Serve:
    async def serve(request: GenerationRequest, link: PeerLink) -> AsyncIterator[object]:
        for i in range(n):
            yield Token(f"d{i}", i)
        await asyncio.sleep(0.05)
        await link.close()  # the peer's process is gone: its side of the socket closes
        await asyncio.sleep(60)
        yield Token("never")

    return serve


def candidates(*links: PeerLink) -> list[tuple[str, Callable[[], PeerLink | None]]]:
    return [(link.peer.name, (lambda link=link: link)) for link in links]


async def collect(chunks: AsyncIterator[object]) -> list[object]:
    return [c async for c in chunks]


REQUEST = GenerationRequest(model="m", prompt="hi")


async def test_chunks_are_relayed_in_order(peers: Peers) -> None:
    b = await peers.add("B", words(50))
    out = await collect(generate_remote(REQUEST, candidates(b)))
    assert out == [Token(f"w{i} ", i) for i in range(50)] + [Finish("length", Usage(3, 50))]


async def test_failover_before_the_first_token(peers: Peers) -> None:
    b = await peers.add("B", not_loaded)
    c = await peers.add("C", words(3))
    out = await collect(generate_remote(REQUEST, candidates(b, c)))
    assert out[-1] == Finish("length", Usage(3, 3)) and len(out) == 4
    closed = await peers.add("D", words(3))
    await closed.close()  # a peer whose link is down is skipped
    out = await collect(generate_remote(REQUEST, candidates(closed, c)))
    assert out[0] == Token("w0 ", 0)


async def test_every_candidate_failing_gives_the_last_error(peers: Peers) -> None:
    b = await peers.add("B", not_loaded)
    out = await collect(generate_remote(REQUEST, candidates(b)))
    assert out == [Error("model 'm' is not loaded", code="model_not_found", status=404)]
    assert (await collect(generate_remote(REQUEST, [])))[0].code == "peer_unreachable"  # type: ignore[union-attr]


async def test_peer_dying_mid_stream_ends_with_an_error_not_a_hang(peers: Peers) -> None:
    b = await peers.add("B", dies_after(3))
    c = await peers.add("C", words(3))  # no failover once tokens have been sent
    out = await asyncio.wait_for(collect(generate_remote(REQUEST, candidates(b, c))), 5)
    assert out[:3] == [Token("d0", 0), Token("d1", 1), Token("d2", 2)]
    assert (
        isinstance(out[3], Error) and out[3].code == "peer_unreachable" and "'B'" in out[3].message
    )
    assert len(out) == 4


async def test_closing_the_proxy_cancels_the_generation_on_the_peer(peers: Peers) -> None:
    cancelled = asyncio.Event()

    async def endless(request: GenerationRequest, link: PeerLink) -> AsyncIterator[object]:
        try:
            for i in range(10**6):
                await asyncio.sleep(0.01)
                yield Token(str(i))
        except asyncio.CancelledError:
            cancelled.set()
            raise

    b = await peers.add("B", endless)
    chunks = generate_remote(REQUEST, candidates(b))
    assert (await chunks.__anext__()) == Token("0")
    await chunks.aclose()  # what the API does when the client disconnects
    await asyncio.wait_for(cancelled.wait(), 2)
