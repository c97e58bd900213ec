"""The peer link: frame sealing, the signed key exchange, and real websocket links between two
identities (multiplexing, cancel, errors, link loss, an unpaired node turned away)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from salut_tui.cluster.frames import (
    MAX_WIRE_MESSAGE,
    PIECE,
    FrameCipher,
    Kind,
    Reassembler,
    decode,
    encode,
    split,
)
from salut_tui.cluster.handshake import (
    INITIATOR,
    RESPONDER,
    link_transcript,
    new_ephemeral,
    session_keys,
    sign_transcript,
    verify_transcript,
)
from salut_tui.cluster.link import LinkLost, PeerLink, RemoteError
from salut_tui.cluster.link_handshake import LINK_PATH, NotPaired, UnpairedByPeer, accept, dial
from salut_tui.pairing.identity import Identity
from salut_tui.pairing.keys import CryptoFailure
from salut_tui.pairing.trust import TrustStore
from tests.helpers import until


def test_frame_cipher_roundtrip_and_replay_protection() -> None:
    k1, k2 = b"1" * 32, b"2" * 32
    alice, bob = FrameCipher(k1, k2), FrameCipher(k2, k1)
    first, second = alice.seal(encode(Kind.DATA, 3, b"hello")), alice.seal(b"x" * 4096)
    assert decode(bob.open(first)) == (Kind.DATA, 3, b"hello")
    with pytest.raises(CryptoFailure):
        bob.open(first)  # replayed
    assert bob.open(second) == b"x" * 4096
    third, fourth = alice.seal(b"3"), alice.seal(b"4")
    with pytest.raises(CryptoFailure):
        bob.open(fourth)  # reordered (third skipped)
    tampered = bytearray(third)
    tampered[-1] ^= 1
    with pytest.raises(CryptoFailure):
        bob.open(bytes(tampered))
    assert len(first) == 16 + 5 + 5  # MAC + header + payload: nothing else on the wire


def test_handshake_keys_match_and_signatures_bind_roles() -> None:
    i, r = Identity.generate(), Identity.generate()
    ei, er = new_ephemeral(), new_ephemeral()
    t = link_transcript(i.node_id, r.node_id, bytes(ei.public_key), bytes(er.public_key))
    ik = session_keys(ei, bytes(er.public_key), t, INITIATOR)
    rk = session_keys(er, bytes(ei.public_key), t, RESPONDER)
    assert ik.send == rk.receive and ik.receive == rk.send and ik.send != ik.receive
    verify_transcript(r.public_key, RESPONDER, t, sign_transcript(r, RESPONDER, t))
    with pytest.raises(CryptoFailure):  # a responder signature is not an initiator one
        verify_transcript(r.public_key, INITIATOR, t, sign_transcript(r, RESPONDER, t))
    other = link_transcript(
        i.node_id, r.node_id, bytes(ei.public_key), bytes(new_ephemeral().public_key)
    )
    with pytest.raises(CryptoFailure):  # a signature from another session
        verify_transcript(r.public_key, RESPONDER, other, sign_transcript(r, RESPONDER, t))


async def _serve(method: str, body: dict) -> AsyncIterator[bytes]:
    if method == "count":
        for n in range(body["n"]):
            await asyncio.sleep(body.get("delay", 0))
            yield str(n).encode()
    elif method == "hang":
        try:
            yield b"started"
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            CANCELLED.set()
            raise
    elif method == "echo":  # a payload as large as the request's, back
        yield body["blob"].encode() * 2
    elif method == "fail":
        raise ValueError("this method always fails")
        yield b""


CANCELLED = asyncio.Event()


def _link(ws, cipher, peer, initiator: bool) -> PeerLink:  # type: ignore[no-untyped-def]
    return PeerLink(
        ws, cipher, peer=peer, initiator=initiator, handler=_serve, state=lambda: {"who": "me"},
        on_state=lambda link, s: None, on_notice=lambda link, b: None,
    )  # fmt: skip


@pytest.fixture
async def pair_of_nodes(tmp_path: Path, aiohttp_server):  # type: ignore[no-untyped-def]
    """Responder R (an aiohttp server) and initiator I, each trusting the other."""
    r_id, i_id = Identity.generate(), Identity.generate()
    r_trust, i_trust = TrustStore(tmp_path / "r"), TrustStore(tmp_path / "i")
    accepted: list[PeerLink] = []

    async def link_route(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_WIRE_MESSAGE)  # as the real route
        await ws.prepare(request)
        try:
            cipher, peer = await accept(ws, r_id, r_trust)
        except (NotPaired, CryptoFailure):
            await ws.close()
            return ws
        link = _link(ws, cipher, peer, False)
        accepted.append(link)
        await link.run()
        return ws

    app = web.Application()
    app.router.add_get(LINK_PATH, link_route)
    server = await aiohttp_server(app)
    r_as_seen_by_i = i_trust.add(r_id.public_key, "R", f"127.0.0.1:{server.port}")
    r_trust.add(i_id.public_key, "I", "127.0.0.1:1")
    session = aiohttp.ClientSession()
    yield session, i_id, r_as_seen_by_i, accepted, r_trust
    await session.close()


async def test_link_multiplexes_streams_and_unary_calls(pair_of_nodes) -> None:  # type: ignore[no-untyped-def]
    session, i_id, r_peer, *_ = pair_of_nodes
    ws, cipher = await dial(session, i_id, r_peer)
    link = _link(ws, cipher, r_peer, True)
    reader = asyncio.create_task(link.run())

    async def collect(n: int) -> list[bytes]:
        return [p async for p in await link.open("count", {"n": n, "delay": 0.001})]

    results = await asyncio.gather(*(collect(n) for n in (5, 20, 1)))
    assert results == [[str(i).encode() for i in range(n)] for n in (5, 20, 1)]
    assert await link.request("count", {"n": 1}) == 0
    with pytest.raises(RemoteError, match="always fails"):
        await link.request("fail", {})
    await link.close()
    await reader


async def test_closing_a_stream_cancels_the_handler_on_the_peer(pair_of_nodes) -> None:  # type: ignore[no-untyped-def]
    session, i_id, r_peer, *_ = pair_of_nodes
    CANCELLED.clear()
    ws, cipher = await dial(session, i_id, r_peer)
    link = _link(ws, cipher, r_peer, True)
    reader = asyncio.create_task(link.run())
    stream = await link.open("hang", {})
    assert await stream.__anext__() == b"started"
    await stream.aclose()
    await asyncio.wait_for(CANCELLED.wait(), 2)
    await link.close()
    await reader


async def test_peer_loss_fails_open_streams_at_once(pair_of_nodes) -> None:  # type: ignore[no-untyped-def]
    session, i_id, r_peer, accepted, _ = pair_of_nodes
    ws, cipher = await dial(session, i_id, r_peer)
    link = _link(ws, cipher, r_peer, True)
    reader = asyncio.create_task(link.run())
    stream = await link.open("hang", {})
    assert await stream.__anext__() == b"started"
    await accepted[0].close()  # the responder goes away
    with pytest.raises(LinkLost):
        await asyncio.wait_for(stream.__anext__(), 2)
    await asyncio.wait_for(reader, 2)
    with pytest.raises(LinkLost):
        await link.open("count", {"n": 1})


async def test_a_draining_link_finishes_its_streams_then_closes(pair_of_nodes) -> None:  # type: ignore[no-untyped-def]
    session, i_id, r_peer, accepted, _ = pair_of_nodes
    ws, cipher = await dial(session, i_id, r_peer)
    link = _link(ws, cipher, r_peer, True)
    reader = asyncio.create_task(link.run())
    running = await link.open("count", {"n": 20, "delay": 0.05})
    await until(lambda: accepted and accepted[0]._serving)
    responder = accepted[0]
    responder.drain()  # a newer link to I replaces this one, at R
    with pytest.raises(LinkLost, match="replaced"):
        await responder.open("count", {"n": 1})  # R opens nothing new on it
    assert await link.request("count", {"n": 1}) == 0  # I had not switched yet: still served
    assert [p async for p in running] == [str(i).encode() for i in range(20)]  # not cut
    await asyncio.wait_for(reader, 5)  # quiet at last: R closes it, and it ends at I too
    assert responder.closed and link.closed


async def test_state_and_ping_flow_both_ways(pair_of_nodes) -> None:  # type: ignore[no-untyped-def]
    session, i_id, r_peer, *_ = pair_of_nodes
    ws, cipher = await dial(session, i_id, r_peer)
    states: list[dict] = []
    link = PeerLink(
        ws, cipher, peer=r_peer, initiator=True, handler=_serve, state=lambda: {},
        on_state=lambda lk, s: states.append(s), on_notice=lambda lk, b: None,
    )  # fmt: skip
    reader = asyncio.create_task(link.run())
    await until(lambda: states and link.rtt is not None, 2.0, what="a STATE and a PONG")
    assert states[0] == {"who": "me"} and 0 < link.rtt < 1  # type: ignore[operator]
    await link.close()
    await reader


async def test_unpaired_node_is_turned_away(pair_of_nodes) -> None:  # type: ignore[no-untyped-def]
    session, _, r_peer, *_ = pair_of_nodes
    stranger = Identity.generate()
    with pytest.raises(NotPaired, match="not_paired"):
        await dial(session, stranger, r_peer)


async def test_impersonating_a_paired_id_fails_the_signature(pair_of_nodes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    session, i_id, r_peer, accepted, _ = pair_of_nodes
    impostor = Identity.generate()
    ws = await session.ws_connect(f"http://{r_peer.address}{LINK_PATH}")
    eph = new_ephemeral()
    await ws.send_json(
        {"node_id": i_id.node_id, "to": r_peer.node_id, "eph": bytes(eph.public_key).hex()}
    )
    second = await ws.receive_json()
    t = link_transcript(
        i_id.node_id, r_peer.node_id, bytes(eph.public_key), bytes.fromhex(second["eph"])
    )
    await ws.send_json({"sig": sign_transcript(impostor, INITIATOR, t).hex()})
    msg = await ws.receive(timeout=2)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert accepted == []


async def test_a_node_unpaired_while_away_learns_it_from_a_signed_refusal(pair_of_nodes) -> None:  # type: ignore[no-untyped-def]
    session, i_id, r_peer, accepted, r_trust = pair_of_nodes
    r_trust.remove(i_id.node_id)  # R unpaired I while I was offline
    with pytest.raises(UnpairedByPeer):
        await dial(session, i_id, r_peer)
    # The refusal is only believed when signed by the key I trusts for R.
    wrong_key = replace(r_peer, public_key=Identity.generate().public_key.hex())
    with pytest.raises(CryptoFailure):
        await dial(session, i_id, wrong_key)
    assert accepted == []


def test_large_frames_split_into_pieces_and_join_back() -> None:
    frame = encode(Kind.OPEN, 7, bytes(range(256)) * 1000)
    pieces = split(frame)
    assert len(pieces) == -(-len(frame) // PIECE) and all(len(p) <= PIECE + 5 for p in pieces)
    assert [decode(p)[0] for p in pieces] == [Kind.PART] * (len(pieces) - 1) + [Kind.PART_END]
    joiner = Reassembler()
    joined = [joiner.feed(*decode(p)[::2]) for p in pieces]
    assert joined[:-1] == [None] * (len(pieces) - 1) and joined[-1] == frame
    assert split(encode(Kind.DATA, 1, b"small")) == [encode(Kind.DATA, 1, b"small")]


async def test_large_payloads_cross_the_link_both_ways(pair_of_nodes) -> None:  # type: ignore[no-untyped-def]
    """Both ends read at most MAX_WIRE_MESSAGE per websocket message; a request and an answer
    many times larger go through (in pieces), interleaved with small streams."""
    session, i_id, r_peer, *_ = pair_of_nodes
    ws, cipher = await dial(session, i_id, r_peer)
    link = _link(ws, cipher, r_peer, True)
    reader = asyncio.create_task(link.run())
    blob = "0123456789abcdef" * (MAX_WIRE_MESSAGE // 2)  # 8 messages' worth
    big, small = await asyncio.gather(
        link.open("echo", {"blob": blob}),
        link.request("count", {"n": 1}),
    )
    assert [p async for p in big] == [blob.encode() * 2] and small == 0
    await link.close()
    await reader
