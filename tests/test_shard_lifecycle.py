"""The sharded instance's life, by exact event sequences through the transition table."""

from __future__ import annotations

import pytest

from salut_tui.shard.lifecycle import TRANSITIONS, Event, State, advance, is_live


def _run(events: list[Event], state: State = "starting") -> list[State]:
    seen = [state]
    for event in events:
        state = advance(state, event) or state
        seen.append(state)
    return seen


def test_a_load_then_an_unload() -> None:
    assert _run(["ready", "stop", "exited"]) == ["starting", "ready", "stopping", "stopped"]


@pytest.mark.parametrize("failure", ["join_timeout", "load_timeout", "runner_died", "peer_failed"])
def test_a_failure_while_starting_is_torn_down(failure: Event) -> None:
    assert _run([failure, "stop", "exited"]) == ["starting", "failed", "stopping", "stopped"]


def test_a_peer_lost_while_serving_then_our_runner_dies_of_it_too() -> None:
    assert _run(["ready", "peer_failed", "runner_died", "stop", "runner_died", "exited"]) == [
        "starting", "ready", "failed", "failed", "stopping", "stopping", "stopped",
    ]  # fmt: skip


def test_late_and_meaningless_events_change_nothing() -> None:
    assert advance("ready", "join_timeout") is None  # the watchdog fired after the join
    assert advance("ready", "load_timeout") is None
    assert advance("failed", "ready") is None  # rank 0 said ready after a peer had failed
    assert advance("stopping", "ready") is None
    assert advance("stopping", "stop") is None
    assert advance("starting", "exited") is None  # a runner ends only through stopping
    for event in ("ready", "stop", "exited", "runner_died", "peer_failed"):
        assert advance("stopped", event) is None  # type: ignore[arg-type]


def test_only_starting_and_ready_count_as_present() -> None:
    states = {s for s, _ in TRANSITIONS} | set(TRANSITIONS.values())
    assert {s for s in states if is_live(s)} == {"starting", "ready"}
