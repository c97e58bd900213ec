"""The pairing messages on the websocket: receiving one (with its deadline), rejecting, and
parsing a party. Each message is a small JSON object with a "type"."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import aiohttp

from salut_tui.pairing.exchange import Party
from salut_tui.pairing.identity import Identity
from salut_tui.pairing.keys import CryptoFailure, fingerprint
from salut_tui.pairing.reasons import FailureReason, as_reason

PAIR_PATH = "/salut/pair"
STEP_TIMEOUT = 10.0  # seconds for the other side's next message
PAIR_MAX_MESSAGE = 16 * 1024  # the largest message read; pairing messages are a few hundred bytes


class PeerLeft(Exception):
    """The socket closed (or sent something that is not a message)."""


class Rejected(Exception):
    """The other side refused, and said why."""

    def __init__(self, reason: FailureReason, retry_after: float = 0.0) -> None:
        super().__init__(reason)
        self.reason: FailureReason = reason
        self.retry_after = retry_after


def party_from(body: dict, me: Identity) -> Party:
    party = Party.from_json(body)
    if fingerprint(party.public_key) != party.node_id or party.node_id == me.node_id:
        raise CryptoFailure("peer id does not match its key")
    return party


async def reject(ws: Any, reason: FailureReason, retry_after: float = 0.0) -> None:
    body: dict = {"type": "reject", "reason": reason}
    if retry_after:
        body["retry_after"] = round(retry_after, 1)
    with contextlib.suppress(ConnectionError):
        await ws.send_json(body)
    await ws.close()


async def receive(ws: Any, expected: str, timeout: float = STEP_TIMEOUT) -> dict:
    msg = await ws.receive(timeout=timeout)
    if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
        raise PeerLeft()
    body = json.loads(msg.data)
    if not isinstance(body, dict):
        raise CryptoFailure("malformed pairing message")
    if body.get("type") == "reject":
        try:
            wait = max(0.0, min(float(body.get("retry_after", 0)), 3600.0))
        except (TypeError, ValueError):
            wait = 0.0
        raise Rejected(as_reason(body.get("reason")), wait)
    if body.get("type") != expected:
        raise CryptoFailure(f"expected {expected}, got {body.get('type')}")
    return body


def host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host
