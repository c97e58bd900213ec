"""The opening exchange of a peer link, on a fresh websocket: `dial` (the initiator) and
`accept` (the responder). Both prove their node keys over fresh ephemeral keys (`handshake`) and
derive the link's session keys; the result is the `FrameCipher` a `PeerLink` runs on.

Before the handshake completes, the other end is a stranger: it gets small messages only
(`MAX_WIRE_MESSAGE`, enforced by aiohttp before any payload is buffered) and `HANDSHAKE_TIMEOUT`
in all. A node not in the trust store is turned away after its first message; one we unpaired
while it was away gets a signed refusal, so it drops its trust in us too.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp import web

from salut_tui.cluster.frames import MAX_WIRE_MESSAGE, FrameCipher
from salut_tui.cluster.handshake import (
    INITIATOR,
    RESPONDER,
    link_transcript,
    new_ephemeral,
    session_keys,
    sign_refusal,
    sign_transcript,
    verify_refusal,
    verify_transcript,
)
from salut_tui.pairing.identity import Identity
from salut_tui.pairing.names import clean_name
from salut_tui.pairing.trust import TrustedPeer, TrustStore

LINK_PATH = "/salut/link"
HANDSHAKE_TIMEOUT = 5.0  # the whole handshake, either side
DIAL_TIMEOUT = 3.0  # connecting to one address (a candidate may be a tarpit)


class NotPaired(Exception):
    """The other side is not (or no longer) in the trust store."""


class UnpairedByPeer(NotPaired):
    """The peer proved (with its key) that it removed us: unpairing done while we were away."""


async def _receive_json(ws: Any, timeout: float = HANDSHAKE_TIMEOUT) -> dict:
    """One handshake message; a refusal ({"error": ...}) is for the caller to read."""
    msg = await ws.receive(timeout=timeout)
    if msg.type is not aiohttp.WSMsgType.TEXT:
        raise NotPaired("link closed during the handshake")
    body = json.loads(msg.data)  # at most MAX_WIRE_MESSAGE bytes
    if not isinstance(body, dict):
        raise NotPaired("malformed handshake message")
    return body


async def accept(
    ws: web.WebSocketResponse, identity: Identity, trust: TrustStore
) -> tuple[FrameCipher, TrustedPeer]:
    """Responder side, all of it within HANDSHAKE_TIMEOUT. Anyone not in the trust store is
    turned away after the first message."""
    async with asyncio.timeout(HANDSHAKE_TIMEOUT):
        return await _accept(ws, identity, trust)


async def _accept(
    ws: web.WebSocketResponse, identity: Identity, trust: TrustStore
) -> tuple[FrameCipher, TrustedPeer]:
    first = await _receive_json(ws)
    caller = str(first.get("node_id"))
    peer = trust.get(caller)
    their_eph = bytes.fromhex(first["eph"])
    if peer is None or first.get("to") != identity.node_id:
        refusal: dict = {"error": "not_paired"}
        if first.get("to") == identity.node_id:
            # Signed over the caller's fresh ephemeral key, so it cannot be replayed: a node that
            # we unpaired while it was offline learns it for sure and drops its trust in us too.
            refusal["sig"] = sign_refusal(identity, caller, their_eph).hex()
        await ws.send_json(refusal)
        raise NotPaired(f"link attempt from unpaired node {caller[:40]!r}")
    eph = new_ephemeral()
    mine = bytes(eph.public_key)
    transcript = link_transcript(peer.node_id, identity.node_id, their_eph, mine)
    signature = sign_transcript(identity, RESPONDER, transcript)
    await ws.send_json({"node_id": identity.node_id, "eph": mine.hex(), "sig": signature.hex()})
    third = await _receive_json(ws)
    verify_transcript(peer.key_bytes, INITIATOR, transcript, bytes.fromhex(third["sig"]))
    keys = session_keys(eph, their_eph, transcript, RESPONDER)
    return FrameCipher(keys.send, keys.receive), peer


async def dial(
    session: aiohttp.ClientSession,
    identity: Identity,
    peer: TrustedPeer,
    address: str | None = None,
) -> tuple[aiohttp.ClientWebSocketResponse, FrameCipher]:
    """Initiator side: connect to a paired peer (at `address`, by default where it was last
    proven to be) and prove who we both are. Whatever answers there is a stranger until it
    signs: it gets DIAL_TIMEOUT to connect and HANDSHAKE_TIMEOUT to sign, in small messages."""
    async with asyncio.timeout(DIAL_TIMEOUT):
        ws = await session.ws_connect(
            f"http://{address or peer.address}{LINK_PATH}",
            max_msg_size=MAX_WIRE_MESSAGE,
            timeout=aiohttp.ClientWSTimeout(ws_close=1.0),
        )
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            return ws, await _dial_handshake(ws, identity, peer)
    except BaseException:
        await ws.close()
        raise


async def _dial_handshake(
    ws: aiohttp.ClientWebSocketResponse, identity: Identity, peer: TrustedPeer
) -> FrameCipher:
    eph = new_ephemeral()
    mine = bytes(eph.public_key)
    await ws.send_json({"node_id": identity.node_id, "to": peer.node_id, "eph": mine.hex()})
    second = await _receive_json(ws)
    if "error" in second:
        if "sig" in second:
            signature = bytes.fromhex(str(second["sig"]))
            verify_refusal(peer.key_bytes, identity.node_id, mine, peer.node_id, signature)
            raise UnpairedByPeer(f"not_paired: {peer.name} unpaired this node")
        raise NotPaired(clean_name(second["error"], 200))
    if second.get("node_id") != peer.node_id:
        raise NotPaired(f"the node that answered is not {peer.name}")
    their_eph = bytes.fromhex(second["eph"])
    transcript = link_transcript(identity.node_id, peer.node_id, mine, their_eph)
    verify_transcript(peer.key_bytes, RESPONDER, transcript, bytes.fromhex(second["sig"]))
    await ws.send_json({"sig": sign_transcript(identity, INITIATOR, transcript).hex()})
    keys = session_keys(eph, their_eph, transcript, INITIATOR)
    return FrameCipher(keys.send, keys.receive)
