"""The pairing state machine, driven by event lists: exact transitions and actions.

What spends a code is pinned down here: only a confirm that fails (a real guess) or success. A
hello alone, a joiner that leaves or stalls before its confirm, returns the host to waiting with
the code intact; only the owner (cancel, a new code) or the clock ends a code otherwise."""

from __future__ import annotations

import pytest

from salut_tui.pairing.machine import TRANSITIONS, Action, Event, PairingMachine, Role, State

A, E = Action, Event


def run(role: Role, events: list[Event]) -> PairingMachine:
    machine = PairingMachine(role)
    for event in events:
        machine.feed(event)
    return machine


def path(machine: PairingMachine) -> list[tuple[str, str, str]]:
    return [(t.old.value, t.event.value, t.new.value) for t in machine.history]


def test_host_success_sequence() -> None:
    m = PairingMachine(Role.HOST)
    assert m.feed(E.CODE_CREATED) == (A.SHOW_CODE, A.START_TIMER)
    assert m.feed(E.HELLO_RECEIVED) == (A.SEND_PAKE,)  # a hello alone burns nothing
    assert m.feed(E.CONFIRM_VALID) == (A.BURN_CODE, A.STORE_TRUST, A.SEND_CONFIRM, A.CLOSE)
    assert path(m) == [
        ("idle", "code_created", "waiting"),
        ("waiting", "hello_received", "exchanging"),
        ("exchanging", "confirm_valid", "paired"),
    ]
    assert m.finished and m.state is State.PAIRED


def test_joiner_success_sequence() -> None:
    m = PairingMachine(Role.JOINER)
    assert m.feed(E.JOIN_REQUESTED) == (A.SEND_HELLO,)
    assert m.feed(E.PAKE_RECEIVED) == (A.SEND_CONFIRM,)
    assert m.feed(E.CONFIRM_VALID) == (A.STORE_TRUST, A.CLOSE)
    assert m.state is State.PAIRED


def test_host_wrong_code_is_the_only_failure_that_spends_the_code() -> None:
    m = run(Role.HOST, [E.CODE_CREATED, E.HELLO_RECEIVED])
    assert m.feed(E.CONFIRM_INVALID) == (A.BURN_CODE, A.SEND_REJECT, A.COUNT_FAILURE, A.CLOSE)
    assert m.state is State.FAILED
    burning = [(t.old, t.event) for t in m.history if A.BURN_CODE in t.actions]
    assert burning == [(State.EXCHANGING, E.CONFIRM_INVALID)]


@pytest.mark.parametrize("event", [E.PEER_LEFT, E.TIMED_OUT])
def test_abandoned_exchanges_leave_the_code_waiting(event: Event) -> None:
    """A LAN host that sends hellos and walks away (or stalls) burns nothing: it is counted
    against its own source, and the code is still there for the real joiner."""
    m = run(Role.HOST, [E.CODE_CREATED, E.HELLO_RECEIVED, event, E.HELLO_RECEIVED, event])
    assert path(m) == [
        ("idle", "code_created", "waiting"),
        ("waiting", "hello_received", "exchanging"),
        ("exchanging", event.value, "waiting"),
        ("waiting", "hello_received", "exchanging"),
        ("exchanging", event.value, "waiting"),
    ]
    assert m.history[2].actions == (A.SEND_REJECT, A.COUNT_FAILURE, A.CLOSE)
    assert all(A.BURN_CODE not in t.actions for t in m.history)
    assert m.feed(E.HELLO_RECEIVED) == (A.SEND_PAKE,)
    assert m.feed(E.CONFIRM_VALID)[:2] == (A.BURN_CODE, A.STORE_TRUST)
    assert m.state is State.PAIRED


def test_joiner_rejection_ends_it_without_counting() -> None:
    m = run(Role.JOINER, [E.JOIN_REQUESTED, E.PAKE_RECEIVED, E.REJECTED])
    assert path(m)[-1] == ("confirm_sent", "rejected", "failed")
    assert m.history[-1].actions == (A.CLOSE,)  # the host limits; a joiner never counts


def test_host_code_expires_unused() -> None:
    m = run(Role.HOST, [E.CODE_CREATED, E.CODE_EXPIRED])
    assert path(m) == [("idle", "code_created", "waiting"), ("waiting", "code_expired", "expired")]
    assert m.history[-1].actions == (A.BURN_CODE,)


def test_code_expiring_during_an_exchange_ends_it_uncounted() -> None:
    m = run(Role.HOST, [E.CODE_CREATED, E.HELLO_RECEIVED, E.CODE_EXPIRED])
    assert path(m)[-1] == ("exchanging", "code_expired", "expired")
    assert m.history[-1].actions == (A.BURN_CODE, A.SEND_REJECT, A.CLOSE)


def test_owner_cancel_wins_over_an_exchange() -> None:
    m = run(Role.HOST, [E.CODE_CREATED, E.HELLO_RECEIVED, E.CANCELLED])
    assert path(m)[-1] == ("exchanging", "cancelled", "cancelled")
    assert m.history[-1].actions == (A.BURN_CODE, A.SEND_REJECT, A.CLOSE)
    assert A.COUNT_FAILURE not in m.history[-1].actions


def test_events_after_the_end_change_nothing() -> None:
    m = run(Role.HOST, [E.CODE_CREATED, E.CODE_EXPIRED])
    assert m.feed(E.HELLO_RECEIVED) == ()  # a reused, expired code
    assert m.state is State.EXPIRED and len(m.history) == 2


def test_out_of_order_event_fails_the_attempt_and_kills_the_code() -> None:
    m = run(Role.HOST, [E.CODE_CREATED])
    assert m.feed(E.CONFIRM_VALID) == (A.BURN_CODE, A.SEND_REJECT, A.COUNT_FAILURE, A.CLOSE)
    assert path(m)[-1] == ("waiting", "confirm_valid", "failed")
    j = run(Role.JOINER, [E.JOIN_REQUESTED])
    assert j.feed(E.CONFIRM_VALID) == (A.CLOSE,)  # confirm before PAKE
    assert j.state is State.FAILED


def test_cancel_while_waiting() -> None:
    m = run(Role.HOST, [E.CODE_CREATED, E.CANCELLED])
    assert path(m)[-1] == ("waiting", "cancelled", "cancelled")


@pytest.mark.parametrize("role", list(Role))
def test_only_trust_storing_transition_reaches_paired(role: Role) -> None:
    for (_, _), (new, actions) in TRANSITIONS[role].items():
        assert (new is State.PAIRED) == (A.STORE_TRUST in actions)


def test_every_finished_host_state_has_burnt_its_code() -> None:
    """No terminal host transition may leave a code alive; no live one may burn it."""
    for (_, _), (new, actions) in TRANSITIONS[Role.HOST].items():
        finished = new in (State.PAIRED, State.FAILED, State.EXPIRED, State.CANCELLED)
        assert finished == (A.BURN_CODE in actions), new
