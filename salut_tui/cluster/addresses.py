"""Where to dial a paired peer (pure).

Two kinds of address: *proven* ones (the trust store: where a signed handshake or the pairing
exchange showed the peer's key) and *candidates* (what mDNS or a listed address announced, which
anyone on the LAN can forge). A candidate may add a place to try, never remove or reorder a
proven one: a rogue that announces a paired peer's id from elsewhere costs, at worst, one
bounded dial to its address after the real ones.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_CANDIDATES = 4  # announced addresses remembered per peer, the most recent first


def note_candidate(candidates: tuple[str, ...], address: str) -> tuple[str, ...]:
    """`candidates` with `address` first (most recently announced), at most MAX_CANDIDATES."""
    if not address:
        return candidates
    return (address, *(a for a in candidates if a != address))[:MAX_CANDIDATES]


def dial_order(proven: Sequence[str], candidates: Sequence[str]) -> list[str]:
    """Every proven address (latest first), then each new candidate, each once."""
    order: list[str] = []
    for address in (*proven, *candidates[:MAX_CANDIDATES]):
        if address and address not in order:
            order.append(address)
    return order
