"""What a hostile LAN host can do to a pair of nodes (two real nodes in-process, the tiny model):

- announce a paired peer's id from its own address (as a rogue mDNS responder would): the
  trusted address and name stay as the handshake proved them, and the link still comes up;
- answer a dial with junk or huge data: the dial fails fast and reads little;
- flood `/salut/link` with unauthenticated websockets (big frames, idle holders, more than
  allowed): each is refused or cut short, while a paired link and a proxied stream carry on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from salut_tui.cluster.addresses import dial_order, note_candidate
from salut_tui.cluster.frames import MAX_WIRE_MESSAGE
from salut_tui.cluster.link_handshake import LINK_PATH, NotPaired, dial
from salut_tui.cluster.routes import PRE_AUTH_MAX, PRE_AUTH_PER_SOURCE
from salut_tui.config import Settings
from salut_tui.engine.types import Finish, GenerationRequest, SamplingParams, Token
from salut_tui.node import Node
from tests.helpers import until


def make(tmp: Path, name: str, models: dict[str, str] | None = None) -> Node:
    settings = Settings(
        host="127.0.0.1", port=0, data_dir=str(tmp / name), node_name=name, models=models or {}
    )  # type: ignore[call-arg]
    return Node(settings)


def record(x: Node, y: Node):  # type: ignore[no-untyped-def]
    assert x.cluster is not None and y.cluster is not None
    return x.cluster.table.get(y.cluster.node_id)


def healthy(x: Node, y: Node) -> bool:
    r = record(x, y)
    return r is not None and r.health == "ok"


async def pair(a: Node, b: Node) -> None:
    assert a.cluster is not None and b.cluster is not None
    code = a.cluster.create_pairing_code().code
    assert code is not None
    await b.cluster.join(f"127.0.0.1:{a.port}", code)
    await until(lambda: healthy(a, b) and healthy(b, a))


@pytest.fixture
async def nodes(tmp_path: Path, tiny_model_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    a, b = make(tmp_path, "A"), make(tmp_path, "B", {"tiny-b": str(tiny_model_path)})
    await a.start()
    await b.start(preload=["tiny-b"])
    await until(lambda: b.engine is not None and b.engine.is_loaded("tiny-b"), 60)
    await pair(a, b)
    yield a, b
    await a.stop()
    await b.stop()


def junk_app(message_bytes: int) -> web.Application:
    """A 'candidate' that accepts the websocket and answers with one huge text message."""

    async def link(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        try:
            await ws.send_str('{"error": "' + "x" * message_bytes + '"}')
            await asyncio.sleep(5)
        except ConnectionError:
            pass
        return ws

    app = web.Application()
    app.router.add_get(LINK_PATH, link)
    return app


# ---- candidates never rewrite trust (pure) ------------------------------------------------------
def test_dial_order_puts_every_proven_address_before_any_candidate() -> None:
    proven = ("10.0.0.2:7258", "192.168.1.5:7258")
    rogue = "10.0.0.66:7258"
    assert dial_order(proven, (rogue, "10.0.0.2:7258")) == [*proven, rogue]
    assert dial_order((), ("10.0.0.3:7258",)) == ["10.0.0.3:7258"]  # a peer that moved
    many = ()
    for n in range(10):
        many = note_candidate(many, f"10.0.1.{n}:7258")
    assert many[0] == "10.0.1.9:7258" and len(many) == 4  # latest first, bounded
    assert dial_order(proven, many)[:2] == list(proven)


# ---- a rogue announcement --------------------------------------------------------------------
async def test_rogue_announcement_neither_rewrites_trust_nor_stops_the_link(
    nodes: tuple[Node, Node], aiohttp_server
) -> None:
    a, b = nodes
    assert a.cluster is not None and b.cluster is not None
    b_id = b.cluster.node_id
    trusted = a.cluster.trust.get(b_id)
    assert trusted is not None and trusted.address == f"127.0.0.1:{b.port}"
    server = await aiohttp_server(junk_app(20 * 1024 * 1024))
    junk = f"127.0.0.1:{server.port}"
    try:
        # What a rogue mDNS responder announcing B's id from its own address makes A's
        # discovery report (names arrive cleaned by discovery; a rogue picks any name).
        a.cluster._seen(b_id, "rogue", junk, "6.6.6", "mdns")
        r = record(a, b)
        assert junk in r.candidates
        assert (r.name, r.address) == ("B", trusted.address)
        assert a.cluster.trust.get(b_id) == trusted  # nothing unauthenticated reaches trust
        assert [m.owned_by for m in a.models() if m.id == "tiny-b"] == ["B"]
        # Cut the link: the nodes re-link through the proven address while the rogue talks.
        old = r.link
        await old.close()
        await until(lambda: healthy(a, b) and record(a, b).link is not old)
        for _ in range(5):  # and keeps talking
            a.cluster._seen(b_id, "rogue", junk, "6.6.6", "mdns")
        assert a.cluster.trust.get(b_id).addresses == trusted.addresses  # type: ignore[union-attr]
        out = [c async for c in a.generate(greedy(4))]
        assert isinstance(out[-1], Finish)
    finally:
        await server.close()


async def test_a_dial_to_a_junk_candidate_is_bounded(tmp_path: Path, aiohttp_server) -> None:
    """A candidate that answers with a 20 MiB message: 0.1 read (and parsed, on the loop) all
    of it; now the read stops at MAX_WIRE_MESSAGE and the dial fails at once."""
    from salut_tui.pairing.identity import Identity
    from salut_tui.pairing.trust import TrustStore

    server = await aiohttp_server(junk_app(20 * 1024 * 1024))
    junk = f"127.0.0.1:{server.port}"
    me = Identity.generate()
    peer = TrustStore(tmp_path).add(Identity.generate().public_key, "B", junk)
    try:
        async with aiohttp.ClientSession() as session:
            started = time.monotonic()
            with pytest.raises(NotPaired) as refused:
                await dial(session, me, peer)
            assert time.monotonic() - started < 10  # generous: it is immediate
            assert len(str(refused.value)) < 300  # the junk was not read into an error
    finally:
        await server.close()


# ---- a pre-auth flood ----------------------------------------------------------------------------
def greedy(max_tokens: int) -> GenerationRequest:
    return GenerationRequest(
        model="tiny-b",
        prompt="hello",
        sampling=SamplingParams(temperature=0, max_tokens=max_tokens),
    )


async def test_pre_auth_flood_costs_neither_the_link_nor_a_stream(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    link_on_a, link_on_b = record(a, b).link, record(b, a).link
    stream = a.generate(greedy(60))
    first = await stream.__anext__()
    assert isinstance(first, Token)

    url = f"http://127.0.0.1:{b.port}{LINK_PATH}"
    sources = [f"127.0.0.{10 + n}" for n in range(PRE_AUTH_MAX // PRE_AUTH_PER_SOURCE + 2)]
    sessions = [
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(s, 0))) for s in sources
    ]
    admitted: list[aiohttp.ClientWebSocketResponse] = []
    refused = 0
    try:
        for session in sessions:
            for _ in range(PRE_AUTH_PER_SOURCE + 1):  # one more than a source may hold
                try:
                    admitted.append(await session.ws_connect(url, max_msg_size=0))
                except aiohttp.WSServerHandshakeError as exc:
                    assert exc.status == 503
                    refused += 1
        assert len(admitted) == PRE_AUTH_MAX
        assert refused == len(sources) * (PRE_AUTH_PER_SOURCE + 1) - PRE_AUTH_MAX
        big, idle = admitted[::2], admitted[1::2]
        for ws in big:  # a frame over the pre-auth limit: refused before it is buffered
            await ws.send_bytes(b"{" * (4 * MAX_WIRE_MESSAGE))
        for ws in big:
            msg = await ws.receive(timeout=10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        rest = [c async for c in stream]  # the proxied stream went on meanwhile
        assert isinstance(rest[-1], Finish) and len(rest) == 60
        for ws in idle:  # holders that never speak are cut at the handshake deadline
            msg = await ws.receive(timeout=15)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    finally:
        for ws in admitted:
            await ws.close()
        for session in sessions:
            await session.close()
    # The same links all along, still healthy: nothing was re-dialled or dropped.
    assert record(a, b).link is link_on_a and record(b, a).link is link_on_b
    assert healthy(a, b) and healthy(b, a)
    out = [c async for c in a.generate(greedy(3))]
    assert isinstance(out[-1], Finish)


async def test_large_messages_cross_an_authenticated_link_in_small_pieces(
    nodes: tuple[Node, Node],
) -> None:
    """After the handshake the websocket limit stays MAX_WIRE_MESSAGE: a request many times that
    size travels in pieces and gets the very answer B gives it directly (here: too long for the
    tiny model's context, which B can only say after reading all of it)."""
    a, b = nodes
    prompt = "hello " * (8 * MAX_WIRE_MESSAGE // 6)
    request = GenerationRequest(
        model="tiny-b", prompt=prompt, sampling=SamplingParams(temperature=0, max_tokens=2)
    )
    via_a = [c async for c in a.generate(request)]
    direct = [c async for c in b.generate(request)]
    assert via_a == direct and len(via_a) == 1
    assert healthy(a, b)


async def test_a_real_rogue_mdns_responder_on_loopback(
    nodes: tuple[Node, Node], aiohttp_server
) -> None:
    """The same as above through zeroconf itself: a responder on 127.0.0.1 announcing B's id
    with an escape-laden name and a junk address."""
    from zeroconf import IPVersion
    from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

    from salut_tui.cluster.discovery import SERVICE_TYPE

    a, b = nodes
    assert a.cluster is not None and b.cluster is not None
    b_id = b.cluster.node_id
    trusted = a.cluster.trust.get(b_id)
    server = await aiohttp_server(junk_app(1024 * 1024))
    junk = f"127.0.0.1:{server.port}"
    rogue = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    info = AsyncServiceInfo(
        SERVICE_TYPE,
        f"rogue-{b_id}.{SERVICE_TYPE}",
        port=int(junk.rsplit(":", 1)[1]),
        properties={
            "id": b_id,
            "name": "B\x1b[31m is me",
            "version": "6",
            "port": junk.rsplit(":", 1)[1],
        },
        server="rogue-salut.local.",
        parsed_addresses=["127.0.0.1"],
    )
    stranger = AsyncServiceInfo(  # a node nobody paired, whose name is an escape sequence
        SERVICE_TYPE,
        f"stranger.{SERVICE_TYPE}",
        port=9,
        properties={"id": "eeee-eeee", "name": "evil\x1b[2J\x1b]0;title\x07 twin", "port": "9"},
        server="stranger-salut.local.",
        parsed_addresses=["127.0.0.1"],
    )
    try:
        await rogue.async_register_service(info, cooperating_responders=True)
        await rogue.async_register_service(stranger, cooperating_responders=True)
        await until(lambda: junk in record(a, b).candidates, 15)
        await until(lambda: a.cluster.table.get("eeee-eeee") is not None, 15)  # type: ignore[union-attr]
        assert a.cluster.table.get("eeee-eeee").name == "evil twin"  # type: ignore[union-attr]
        r = record(a, b)
        assert (r.name, r.address) == ("B", trusted.address)  # type: ignore[union-attr]
        assert a.cluster.trust.get(b_id) == trusted
        await r.link.close()
        await until(lambda: healthy(a, b))
        assert a.cluster.trust.get(b_id) == trusted
        assert all("\x1b" not in p.name for p in a.cluster.peers())
    finally:
        await rogue.async_unregister_all_services()
        await rogue.async_close()
        await server.close()
