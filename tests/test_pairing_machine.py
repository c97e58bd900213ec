"""The pairing state machine, driven by event lists: exact transitions and actions."""

from __future__ import annotations

import pytest

from salut_tui.pairing.machine import TRANSITIONS, Action, Event, PairingMachine, Role, State

A = Action


def run(role: Role, events: list[Event]) -> PairingMachine:
    machine = PairingMachine(role)
    for event in events:
        machine.feed(event)
    return machine


def path(machine: PairingMachine) -> list[tuple[str, str, str]]:
    return [(t.old.value, t.event.value, t.new.value) for t in machine.history]


def test_host_success_sequence() -> None:
    m = PairingMachine(Role.HOST)
    assert m.feed(Event.CODE_CREATED) == (A.SHOW_CODE, A.START_TIMER)
    assert m.feed(Event.HELLO_RECEIVED) == (A.BURN_CODE, A.SEND_PAKE)
    assert m.feed(Event.CONFIRM_VALID) == (A.STORE_TRUST, A.SEND_CONFIRM, A.CLOSE)
    assert path(m) == [
        ("idle", "code_created", "waiting"),
        ("waiting", "hello_received", "exchanging"),
        ("exchanging", "confirm_valid", "paired"),
    ]
    assert m.finished and m.state is State.PAIRED


def test_joiner_success_sequence() -> None:
    m = PairingMachine(Role.JOINER)
    assert m.feed(Event.JOIN_REQUESTED) == (A.SEND_HELLO,)
    assert m.feed(Event.PAKE_RECEIVED) == (A.SEND_CONFIRM,)
    assert m.feed(Event.CONFIRM_VALID) == (A.STORE_TRUST, A.CLOSE)
    assert m.state is State.PAIRED


def test_host_wrong_code_burns_code_rejects_and_counts() -> None:
    m = run(Role.HOST, [Event.CODE_CREATED, Event.HELLO_RECEIVED])
    assert m.feed(Event.CONFIRM_INVALID) == (A.SEND_REJECT, A.COUNT_FAILURE, A.CLOSE)
    assert m.state is State.FAILED
    # The code was burnt the moment the hello arrived: one attempt per code.
    assert A.BURN_CODE in m.history[1].actions


def test_joiner_wrong_code_seen_as_rejection() -> None:
    m = run(Role.JOINER, [Event.JOIN_REQUESTED, Event.PAKE_RECEIVED, Event.REJECTED])
    assert path(m)[-1] == ("confirm_sent", "rejected", "failed")
    assert m.history[-1].actions == (A.COUNT_FAILURE, A.CLOSE)


def test_host_code_expires_unused() -> None:
    m = run(Role.HOST, [Event.CODE_CREATED, Event.TIMED_OUT])
    assert path(m) == [("idle", "code_created", "waiting"), ("waiting", "timed_out", "expired")]
    assert m.history[-1].actions == (A.BURN_CODE,)


def test_events_after_the_end_change_nothing() -> None:
    m = run(Role.HOST, [Event.CODE_CREATED, Event.TIMED_OUT])
    assert m.feed(Event.HELLO_RECEIVED) == ()  # a reused, expired code
    assert m.state is State.EXPIRED and len(m.history) == 2


def test_out_of_order_event_fails_the_attempt() -> None:
    m = run(Role.HOST, [Event.CODE_CREATED])
    assert m.feed(Event.CONFIRM_VALID) == (A.SEND_REJECT, A.COUNT_FAILURE, A.CLOSE)
    assert path(m)[-1] == ("waiting", "confirm_valid", "failed")
    j = run(Role.JOINER, [Event.JOIN_REQUESTED])
    assert j.feed(Event.CONFIRM_VALID) == (A.COUNT_FAILURE, A.CLOSE)  # confirm before PAKE
    assert j.state is State.FAILED


def test_peer_leaving_mid_exchange_counts_as_failure() -> None:
    m = run(Role.HOST, [Event.CODE_CREATED, Event.HELLO_RECEIVED, Event.PEER_LEFT])
    assert m.state is State.FAILED and A.COUNT_FAILURE in m.history[-1].actions


def test_cancel_while_waiting() -> None:
    m = run(Role.HOST, [Event.CODE_CREATED, Event.CANCELLED])
    assert path(m)[-1] == ("waiting", "cancelled", "cancelled")


@pytest.mark.parametrize("role", list(Role))
def test_only_trust_storing_transition_reaches_paired(role: Role) -> None:
    for (_, _), (new, actions) in TRANSITIONS[role].items():
        assert (new is State.PAIRED) == (A.STORE_TRUST in actions)
