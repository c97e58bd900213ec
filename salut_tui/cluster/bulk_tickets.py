"""The sender's one-time tickets for the bulk path of a model copy (pure: time is passed in).

A ticket grants one paired peer one read of one byte range of one model file, once, for
`TICKET_TTL` seconds. Redeeming it takes it out of the table whatever happens next, so a ticket
seen on the LAN (the bulk request is plaintext HTTP) is worth nothing to anyone else: it is spent,
and its records are sealed with keys only the two ends of the link can derive.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from salut_tui.cluster.bulk_crypto import TICKET_BYTES, TicketKeys, proof_ok, ticket_keys

TICKET_TTL = 30.0  # seconds between issuing a ticket and its use (the puller uses it at once)
MAX_OPEN_PER_PEER = 32  # unspent tickets one peer may hold (it needs one per piece in flight)


class TicketRefused(Exception):
    """A bulk request that is not served; the message says why (for the log and the 403)."""


@dataclass(frozen=True, slots=True)
class Ticket:
    ticket: bytes
    peer_id: str
    path: Path  # the model file (checked to be one when the ticket was issued)
    name: str
    offset: int
    length: int
    keys: TicketKeys
    expires: float


class TicketTable:
    def __init__(self, ttl: float = TICKET_TTL, max_open: int = MAX_OPEN_PER_PEER) -> None:
        self.ttl, self.max_open = ttl, max_open
        self._open: dict[bytes, Ticket] = {}

    def _prune(self, now: float) -> None:
        for key in [k for k, t in self._open.items() if t.expires <= now]:
            del self._open[key]

    def issue(
        self,
        *,
        peer_id: str,
        link_secret: bytes,
        path: Path,
        name: str,
        offset: int,
        length: int,
        now: float,
    ) -> Ticket:
        self._prune(now)
        if sum(t.peer_id == peer_id for t in self._open.values()) >= self.max_open:
            raise TicketRefused("too many unspent bulk tickets for this peer")
        raw = secrets.token_bytes(TICKET_BYTES)
        ticket = Ticket(
            raw, peer_id, path, name, offset, length, ticket_keys(link_secret, raw), now + self.ttl
        )
        self._open[raw] = ticket
        return ticket

    def redeem(self, ticket_hex: str, proof_hex: str, now: float) -> Ticket:
        """The ticket, spent; TicketRefused when it is unknown, expired, already spent, or the
        proof was not made with the keys of the link it was issued on."""
        try:
            raw, proof = bytes.fromhex(ticket_hex), bytes.fromhex(proof_hex)
        except ValueError:
            raise TicketRefused("malformed bulk ticket") from None
        self._prune(now)
        ticket = self._open.pop(raw, None)  # spent from here on, whatever follows
        if ticket is None:
            raise TicketRefused("unknown, expired or spent bulk ticket")
        if not proof_ok(ticket.keys, raw, proof):
            raise TicketRefused("bulk ticket presented without its link's proof")
        return ticket

    def forget_peer(self, peer_id: str) -> None:
        """Unpaired: what it was granted goes with it."""
        for key in [k for k, t in self._open.items() if t.peer_id == peer_id]:
            del self._open[key]

    def __len__(self) -> int:
        return len(self._open)
