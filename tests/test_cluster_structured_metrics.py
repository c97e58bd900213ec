"""response_format and /metrics across two paired nodes in one process (real engine, tiny model):
a constrained request proxied A -> B stays constrained, and A's scrape shows B's health and
link round trip."""

from __future__ import annotations

import json

import jsonschema

from salut_tui.engine.constraint import JsonConstraint
from salut_tui.engine.types import Finish, GenerationRequest, SamplingParams, Token
from salut_tui.node import Node
from tests.helpers import until
from tests.test_cluster_node import nodes  # noqa: F401  (the paired A, B fixture)
from tests.test_metrics import samples, scrape
from tests.test_structured_output import PERSON


def constrained(seed: int) -> GenerationRequest:
    return GenerationRequest(
        model="tiny-b",
        prompt="Person:",
        sampling=SamplingParams(temperature=1.0, seed=seed, max_tokens=200),
        constraint=JsonConstraint.for_schema(PERSON, "person"),
    )


async def test_a_constrained_request_stays_constrained_through_a_peer(
    nodes: tuple[Node, Node],  # noqa: F811
) -> None:
    a, b = nodes
    via_a = [c async for c in a.generate(constrained(11))]
    direct = [c async for c in b.generate(constrained(11))]
    assert via_a == direct  # same seed, same constraint: B served exactly this on A's behalf
    assert isinstance(via_a[-1], Finish) and via_a[-1].reason == "stop"
    text = "".join(c.text for c in via_a if isinstance(c, Token))
    jsonschema.validate(json.loads(text), PERSON)


async def test_scrape_shows_peers_by_health_and_link_round_trip(
    nodes: tuple[Node, Node],  # noqa: F811
) -> None:
    a, b = nodes
    b_id = b.cluster.node_id  # type: ignore[union-attr]
    await until(lambda: a.cluster.table.get(b_id).link.rtt is not None)  # type: ignore[union-attr]
    status, _, body = await scrape(a)
    assert status == 200
    got = samples(body)
    assert got[("salut_peers", (("health", "ok"),))] == 1
    rtt = got[("salut_peer_link_round_trip_seconds", (("peer", "B"),))]
    assert 0 < rtt < 1
    b_got = samples((await scrape(b))[2])
    assert b_got[("salut_model_loaded", (("model", "tiny-b"),))] == 1
