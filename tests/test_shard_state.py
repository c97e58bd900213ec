"""A peer's shard views enter as data (clean_state) and feed routing and the views."""

from __future__ import annotations

import time

from salut_tui.cluster.peers import PeerRecord, clean_state

GOOD = {
    "instance": "sh-1", "model": "org/m", "mode": "pipeline", "state": "ready", "reason": None,
    "rank": 0, "layers": [0, 12], "memory_bytes": 5, "tokens_per_second": 1.5, "in_flight": 0,
    "coordinator": "id-a",
    "participants": [
        {"id": "id-a", "name": "a\x1b[31m", "rank": 0, "layers": [0, 12]},
        {"id": "id-b", "name": "b", "rank": 1, "layers": [12, 24]},
    ],
}  # fmt: skip


def test_shards_are_kept_cleaned_or_dropped() -> None:
    state = {
        "shards": [
            GOOD,
            {**GOOD, "model": "org/\x07bell"},  # not plain text: dropped, never rewritten
            {**GOOD, "layers": "zero"},  # malformed: dropped
            "junk",
        ]
    }
    (kept,) = clean_state(state)["shards"]
    assert kept["model"] == "org/m" and kept["participants"][0]["name"] == "a"
    assert "shards" not in clean_state({"shards": "nope"})


def test_a_ready_coordinator_is_routable_only_while_fresh() -> None:
    record = PeerRecord("id-a", "a", "10.0.0.1:7258", paired=True)
    record.remember_state(clean_state({"shards": [GOOD, {**GOOD, "rank": 1, "model": "org/x"}]}))
    record.state_at = time.monotonic()
    assert record.coordinated() == frozenset()  # not linked: its state is not fresh
    assert [v.model for v in record.shards] == ["org/m", "org/x"]
