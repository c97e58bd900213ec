"""How many ring messages a sharded decode step costs, counted where they cost: at the relay.

Two runners of the tiny model, their ring carried by relays over a real encrypted peer link
(`RelayedRing`), decode greedily. Every relay counts the tunnel frames and bytes it sends; a
pipeline step needs only the hidden state out (rank 0 -> 1) and the token back (rank 1 -> 0),
plus now and then rank 0's orders. A regression to collectives (an `all_sum` costs 4 messages
for 2 ranks) or to a per-step exchange of orders fails here, and the output still matches one
node's token for token.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from salut_tui.engine.types import new_request_id
from tests.model_factory import build_tiny_model
from tests.shard_helpers import Cluster, RelayedRing
from tests.test_shard_runner import MODEL, chat, concurrent_requests, single_node, summary

LAYERS = 4
TOKEN_BYTES = 4  # one uint32 per sequence per step


def test_a_relayed_step_costs_one_hidden_state_out_and_one_token_back(tmp_path: Path) -> None:
    path = build_tiny_model(tmp_path / "model", num_layers=LAYERS)
    long = chat("Tell me about the quick brown fox", 48)
    batch = concurrent_requests()
    expected = single_node(path, tmp_path / "one", [long, *batch])
    ring = RelayedRing(tmp_path / "relays", 2)
    cluster = Cluster(tmp_path, path, MODEL, 2, LAYERS, hostfiles=ring.hostfiles)
    try:
        cluster.wait_ready()
        root, last = ring.relays
        before = [replace(r.counts) for r in ring.relays]
        request = replace(long, request_id=new_request_id())
        chunks = cluster.generate([request])[request.request_id]
        assert summary(chunks) == expected[0]
        tokens = len(summary(chunks)[0])
        assert tokens >= 40, "the tiny model should decode most of its 48 tokens"

        # Back from the last rank: the sampled tokens only (the generator computes at most one
        # step ahead of the one that ends a request), one frame each.
        back = last.counts.bytes_out - before[1].bytes_out
        assert tokens * TOKEN_BYTES <= back <= (tokens + 1) * TOKEN_BYTES
        assert last.counts.frames_out - before[1].frames_out <= tokens + 1
        # Out of rank 0: one hidden state per step (and the prompt's), the insert's orders,
        # then an order header at most once a step (when steps are slow; fast ones share
        # every ~50 ms). The old collectives cost 2 more frames per step from each rank.
        out = root.counts.frames_out - before[0].frames_out
        assert out <= 2 * tokens + 8
        total = ring.frames() - sum(b.frames_out for b in before)
        assert total / tokens <= 3.3, f"{total} relay frames for {tokens} tokens"

        # Four requests batched together still match one node through the relays.
        requests = [replace(r, request_id=new_request_id()) for r in batch]
        got = cluster.generate(requests)
        for r, want in zip(requests, expected[1:], strict=True):
            assert summary(got[r.request_id]) == want
    finally:
        cluster.close()
        ring.close()
