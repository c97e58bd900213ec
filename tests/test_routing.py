"""The one routing decision (`salut_tui.routing.decide`), case by case: pure, no sockets."""

from __future__ import annotations

from pathlib import Path

import pytest

from salut_tui.routing import (
    PEER_RETRY_AFTER_S,
    LoadLocally,
    Local,
    NotFound,
    Peer,
    PeerFacts,
    PeerUnreachable,
    Route,
    RouteFacts,
    decide,
)
from salut_tui.views import Health

SRC = Path("/models/m")


def peer(
    node_id: str,
    loaded: set[str] = frozenset(),  # type: ignore[assignment]
    available: set[str] = frozenset(),  # type: ignore[assignment]
    *,
    health: Health = "ok",
    load: int = 0,
    rtt: float | None = None,
) -> PeerFacts:
    return PeerFacts(
        node_id,
        node_id.upper(),
        health,
        frozenset(loaded),
        frozenset(available | loaded),
        load,
        rtt,
    )


def facts(*peers: PeerFacts, loaded: bool = False, loadable: bool = False, fwd: bool = False):
    return RouteFacts(
        "m",
        forwarded=fwd,
        loaded_here=loaded,
        loadable_here=loadable,
        source=SRC if loadable else None,
        peers=peers,
    )


HOLDER = peer("b", {"m"})
LOADER = peer("c", available={"m"})
STOPPED = peer("d", {"m"}, health="connecting")
DOWN = peer("e", available={"m"}, health="unreachable")
OTHER = peer("f", {"x"})

CASES: list[tuple[str, RouteFacts, Route]] = [
    # Loaded here wins over everything.
    ("loaded here", facts(HOLDER, loaded=True), Local()),
    ("loaded here, also loadable", facts(loaded=True, loadable=True), Local()),
    # A healthy peer holding it beats loading it here; loadable peers only when we cannot load.
    ("peer holds it", facts(HOLDER), Peer(("b",))),
    ("peer holds it, we could load", facts(HOLDER, LOADER, loadable=True), Peer(("b",))),
    ("holders then loaders", facts(LOADER, HOLDER), Peer(("b", "c"))),
    ("loading here beats a loader", facts(LOADER, loadable=True), LoadLocally(SRC)),
    ("only loadable here", facts(OTHER, loadable=True), LoadLocally(SRC)),
    ("a peer could load it", facts(LOADER, OTHER), Peer(("c",))),
    # Paired peers known to hold it, but not healthy: 503, not 404.
    ("holder stopped", facts(STOPPED, OTHER), PeerUnreachable(("D",))),
    ("loader unreachable", facts(DOWN), PeerUnreachable(("E",))),
    ("both gone", facts(STOPPED, DOWN), PeerUnreachable(("D", "E"))),
    ("gone holder, but loadable here", facts(STOPPED, loadable=True), LoadLocally(SRC)),
    ("gone holder, but a healthy loader", facts(STOPPED, LOADER), Peer(("c",))),
    # Nobody.
    ("nobody", facts(OTHER), NotFound()),
    ("no peers at all", facts(), NotFound()),
    ("discovered-only peers never count", facts(peer("g", {"m"}, health="discovered")), NotFound()),
    # A forwarded request is served here or nowhere: never bounced, never "unreachable".
    ("forwarded, loaded", facts(HOLDER, loaded=True, fwd=True), Local()),
    ("forwarded, loadable", facts(HOLDER, loadable=True, fwd=True), LoadLocally(SRC)),
    ("forwarded, only a peer has it", facts(HOLDER, fwd=True), NotFound()),
    ("forwarded, stopped peer has it", facts(STOPPED, fwd=True), NotFound()),
]


@pytest.mark.parametrize(("case", "given", "expected"), CASES, ids=[c[0] for c in CASES])
def test_decide(case: str, given: RouteFacts, expected: Route) -> None:
    assert decide(given) == expected


def test_holders_least_loaded_first_then_nearest_then_id() -> None:
    peers = (
        peer("b", {"m"}, load=3),
        peer("c", {"m"}, load=1, rtt=0.02),
        peer("d", {"m"}, load=1, rtt=0.001),
        peer("a", {"m"}, load=1),  # no rtt yet: after the measured ones
        peer("z", {"m"}, load=1),
        peer("e", {"x"}),
    )
    assert decide(facts(*peers)) == Peer(("d", "c", "a", "z", "b"))


def test_loaders_are_ordered_the_same_way() -> None:
    peers = (peer("b", available={"m"}, load=2), peer("c", available={"m"}, load=0))
    assert decide(facts(*peers)) == Peer(("c", "b"))


def test_unreachable_says_when_to_retry() -> None:
    route = decide(facts(STOPPED))
    assert isinstance(route, PeerUnreachable) and route.retry_after == PEER_RETRY_AFTER_S > 0


def test_the_bundled_default_loads_without_a_source() -> None:
    given = RouteFacts("m", loadable_here=True, source=None)
    assert decide(given) == LoadLocally(None)
