"""The pairing protocol as an explicit state machine (in the style of magic-wormhole's machines).

The machine is pure: `feed(event)` looks up (state, event) in the role's transition table, moves
to the new state and returns the actions the driver must perform (send a message, store trust,
burn the code...). It never does I/O, so tests drive it with event lists and assert the exact
transitions. Any event that the table does not expect in a live state fails the attempt.

Message flow (joiner B connects to host A, who shows the code):
    B -> A  hello   {B's id, name, public key, API port, SPAKE2 message}
    A -> B  pake    {A's id, name, public key, API port, SPAKE2 message}
    B -> A  confirm {B's signature over the transcript, sealed with a key from the PAKE}
    A -> B  confirm {A's signature over the transcript, sealed with the other PAKE key}

What spends a code: only a real attempt, that is a PAKE exchange whose confirm fails (a wrong
guess), or success. A hello alone commits to nothing the host can check, so a joiner that leaves
or stalls before its confirm returns the host to WAITING with the code intact (its source is
counted by the limiter, so it cannot keep the host busy for long). The owner always wins: a new
code or a cancel ends an exchange in progress.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    HOST = "host"  # shows the code and waits
    JOINER = "joiner"  # types the code and connects


class State(StrEnum):
    IDLE = "idle"
    WAITING = "waiting"  # host: code shown, nobody has used it yet
    HELLO_SENT = "hello_sent"  # joiner: waiting for the host's PAKE message
    EXCHANGING = "exchanging"  # host: PAKE messages crossed, waiting for the joiner's confirm
    CONFIRM_SENT = "confirm_sent"  # joiner: waiting for the host's confirm
    PAIRED = "paired"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


TERMINAL = frozenset({State.PAIRED, State.FAILED, State.EXPIRED, State.CANCELLED})


class Event(StrEnum):
    CODE_CREATED = "code_created"
    JOIN_REQUESTED = "join_requested"
    HELLO_RECEIVED = "hello_received"
    PAKE_RECEIVED = "pake_received"
    CONFIRM_VALID = "confirm_valid"
    CONFIRM_INVALID = "confirm_invalid"
    REJECTED = "rejected"  # the other side refused (wrong code, no code, busy, rate limited)
    PEER_LEFT = "peer_left"
    TIMED_OUT = "timed_out"  # the other side's next message did not come in time
    CODE_EXPIRED = "code_expired"  # host: the code's time to live ran out
    CANCELLED = "cancelled"  # this node's owner cancelled (or replaced) the code


class Action(StrEnum):
    SHOW_CODE = "show_code"
    START_TIMER = "start_timer"
    BURN_CODE = "burn_code"
    SEND_HELLO = "send_hello"
    SEND_PAKE = "send_pake"
    SEND_CONFIRM = "send_confirm"
    SEND_REJECT = "send_reject"
    STORE_TRUST = "store_trust"
    COUNT_FAILURE = "count_failure"
    CLOSE = "close"


S, E, A = State, Event, Action
# A failure that spends the code: the code dies, the source is told and counted.
_SPENT = (A.BURN_CODE, A.SEND_REJECT, A.COUNT_FAILURE, A.CLOSE)
# An exchange abandoned before any guess could be checked: the code lives on, the source counts.
_ABANDONED = (A.SEND_REJECT, A.COUNT_FAILURE, A.CLOSE)

TRANSITIONS: dict[Role, dict[tuple[State, Event], tuple[State, tuple[Action, ...]]]] = {
    Role.HOST: {
        (S.IDLE, E.CODE_CREATED): (S.WAITING, (A.SHOW_CODE, A.START_TIMER)),
        (S.WAITING, E.HELLO_RECEIVED): (S.EXCHANGING, (A.SEND_PAKE,)),
        (S.WAITING, E.CODE_EXPIRED): (S.EXPIRED, (A.BURN_CODE,)),
        (S.WAITING, E.CANCELLED): (S.CANCELLED, (A.BURN_CODE,)),
        (S.EXCHANGING, E.CONFIRM_VALID): (
            S.PAIRED,
            (A.BURN_CODE, A.STORE_TRUST, A.SEND_CONFIRM, A.CLOSE),
        ),
        (S.EXCHANGING, E.CONFIRM_INVALID): (S.FAILED, _SPENT),
        (S.EXCHANGING, E.PEER_LEFT): (S.WAITING, _ABANDONED),
        (S.EXCHANGING, E.TIMED_OUT): (S.WAITING, _ABANDONED),
        (S.EXCHANGING, E.CODE_EXPIRED): (S.EXPIRED, (A.BURN_CODE, A.SEND_REJECT, A.CLOSE)),
        (S.EXCHANGING, E.CANCELLED): (S.CANCELLED, (A.BURN_CODE, A.SEND_REJECT, A.CLOSE)),
    },
    Role.JOINER: {
        (S.IDLE, E.JOIN_REQUESTED): (S.HELLO_SENT, (A.SEND_HELLO,)),
        (S.HELLO_SENT, E.PAKE_RECEIVED): (S.CONFIRM_SENT, (A.SEND_CONFIRM,)),
        (S.HELLO_SENT, E.REJECTED): (S.FAILED, (A.CLOSE,)),
        (S.HELLO_SENT, E.CONFIRM_INVALID): (S.FAILED, (A.CLOSE,)),  # a malformed PAKE message
        (S.HELLO_SENT, E.PEER_LEFT): (S.FAILED, (A.CLOSE,)),
        (S.HELLO_SENT, E.TIMED_OUT): (S.FAILED, (A.CLOSE,)),
        (S.HELLO_SENT, E.CANCELLED): (S.CANCELLED, (A.CLOSE,)),
        (S.CONFIRM_SENT, E.CONFIRM_VALID): (S.PAIRED, (A.STORE_TRUST, A.CLOSE)),
        (S.CONFIRM_SENT, E.CONFIRM_INVALID): (S.FAILED, (A.CLOSE,)),
        (S.CONFIRM_SENT, E.REJECTED): (S.FAILED, (A.CLOSE,)),
        (S.CONFIRM_SENT, E.PEER_LEFT): (S.FAILED, (A.CLOSE,)),
        (S.CONFIRM_SENT, E.TIMED_OUT): (S.FAILED, (A.CLOSE,)),
        (S.CONFIRM_SENT, E.CANCELLED): (S.CANCELLED, (A.CLOSE,)),
    },
}
# What an event the table does not expect does: the attempt fails (and a host's code dies, so
# a finished machine never leaves a live code behind).
UNEXPECTED: dict[Role, tuple[State, tuple[Action, ...]]] = {
    Role.HOST: (S.FAILED, _SPENT),
    Role.JOINER: (S.FAILED, (A.CLOSE,)),
}


@dataclass(frozen=True, slots=True)
class Transition:
    old: State
    event: Event
    new: State
    actions: tuple[Action, ...]


@dataclass
class PairingMachine:
    role: Role
    state: State = State.IDLE
    history: list[Transition] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    def feed(self, event: Event) -> tuple[Action, ...]:
        """Apply one event; return the actions to perform, in order."""
        if self.finished:
            return ()  # late events (a timer, a closing socket) after the end change nothing
        new, actions = TRANSITIONS[self.role].get((self.state, event), UNEXPECTED[self.role])
        self.history.append(Transition(self.state, event, new, actions))
        self.state = new
        return actions
