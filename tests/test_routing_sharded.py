"""The routing decision's sharded answers (pure): this node's instance, or a peer's."""

from __future__ import annotations

from dataclasses import replace

import pytest

from salut_tui.routing import LoadLocally, Local, NotFound, Peer, Route, RouteFacts, Sharded, decide
from tests.test_routing import HOLDER, LOADER, SRC, STOPPED, facts, peer

COORD = replace(peer("k"), sharded=frozenset({"m"}))
BUSY_COORD = replace(peer("j", load=5), sharded=frozenset({"m"}))
GONE_COORD = replace(peer("g", health="unreachable"), sharded=frozenset({"m"}))


def here(given: RouteFacts) -> RouteFacts:
    return replace(given, sharded_here=True)


CASES: list[tuple[str, RouteFacts, Route]] = [
    ("coordinated here", here(facts(HOLDER)), Sharded(None)),
    ("loaded whole here beats our shard", here(facts(loaded=True)), Local()),
    ("forwarded to the coordinator", here(facts(fwd=True)), Sharded(None)),
    ("a peer coordinates it", facts(COORD, LOADER), Sharded("k")),
    ("least loaded coordinator", facts(BUSY_COORD, COORD), Sharded("k")),
    ("a whole copy on a peer first", facts(COORD, HOLDER), Peer(("b",))),
    ("a peer's shard beats loading here", facts(COORD, loadable=True), Sharded("k")),
    ("an unreachable coordinator is skipped", facts(GONE_COORD, loadable=True), LoadLocally(SRC)),
    ("forwarded, not coordinated here", facts(COORD, fwd=True), NotFound()),
    ("stopped holder, healthy coordinator", facts(STOPPED, COORD), Sharded("k")),
]


@pytest.mark.parametrize(("case", "given", "expected"), CASES, ids=[c[0] for c in CASES])
def test_decide_sharded(case: str, given: RouteFacts, expected: Route) -> None:
    assert decide(given) == expected
