"""Why a pairing did not happen: one `Literal` of reasons and the one table that says each in
words and as an HTTP status (the control routes, `salut pair`, and the Pairing screen all read
it)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, cast, get_args

FailureReason = Literal[
    "wrong_code",  # the PAKE exchange failed confirmation: the code is used up
    "no_code",  # the other node shows no code
    "busy",  # the other node is in the middle of another exchange
    "rate_limited",  # this source failed too often; wait
    "expired",  # the code expired during the exchange
    "cancelled",  # the other node's owner cancelled or replaced the code
    "timeout",  # the other side stopped answering
    "peer_left",  # the other side closed the connection
    "invalid_code",  # what was typed cannot be a code (never sent)
    "unreachable",  # nothing answered at the address
    "failed",  # anything else (a malformed message)
]
REASONS: tuple[FailureReason, ...] = get_args(FailureReason)


@dataclass(frozen=True, slots=True)
class ReasonText:
    message: str  # may use {peer} (who we paired with) and {wait} (seconds, rounded up)
    http_status: int


TABLE: dict[FailureReason, ReasonText] = {
    "wrong_code": ReasonText("the code was wrong (it is now used up: ask for a new one)", 400),
    "no_code": ReasonText("{peer} has no pairing code waiting (ask it for a new one)", 400),
    "busy": ReasonText("{peer} is pairing with someone else; try again in a moment", 409),
    "rate_limited": ReasonText("too many failed pairings; try again in {wait} s", 429),
    "expired": ReasonText("the code expired during the exchange (ask for a new one)", 400),
    "cancelled": ReasonText("{peer} cancelled its code (ask for a new one)", 400),
    "timeout": ReasonText("{peer} stopped answering", 504),
    "peer_left": ReasonText("{peer} closed the connection", 502),
    "invalid_code": ReasonText("that is not a pairing code (like 42-maple-rocket)", 400),
    "unreachable": ReasonText("cannot reach {peer}", 502),
    "failed": ReasonText("pairing with {peer} failed", 400),
}
assert set(TABLE) == set(REASONS)


def as_reason(text: object) -> FailureReason:
    """A reason received from the other side; anything unknown becomes "failed"."""
    return cast(FailureReason, text) if isinstance(text, str) and text in TABLE else "failed"


def describe(reason: FailureReason, peer: str = "the other machine", wait: float = 0.0) -> str:
    text = TABLE[reason].message
    return text.format(peer=peer or "the other machine", wait=max(1, math.ceil(wait)))


def http_status(reason: FailureReason) -> int:
    return TABLE[reason].http_status
