"""Runs pairing attempts: the host side (a code is shown, a peer connects to /salut/pair) and the
joiner side (this node connects to a peer with the code a person typed). The state machine in
`machine.py` decides; this module performs its actions over a websocket.

One exchange at a time on a node; a code dies after one real guess (a confirm that fails) or its
time to live; failures back off per source address (see `limiter.py`). Time comes from an
injected clock, so tests move it instead of sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from salut_tui.pairing.codes import new_code, normalise_code
from salut_tui.pairing.exchange import (
    Party,
    check_confirm,
    finish_pake,
    make_confirm,
    start_pake,
    transcript,
)
from salut_tui.pairing.identity import Identity
from salut_tui.pairing.keys import CryptoFailure
from salut_tui.pairing.limiter import Clock, SourceLimiter
from salut_tui.pairing.machine import Action, Event, PairingMachine, Role, State
from salut_tui.pairing.messages import (
    PAIR_MAX_MESSAGE,
    PAIR_PATH,
    STEP_TIMEOUT,
    PeerLeft,
    Rejected,
    host_for_url,
    party_from,
    receive,
    reject,
)
from salut_tui.pairing.names import clean_name
from salut_tui.pairing.reasons import FailureReason, describe
from salut_tui.pairing.status import PairingError, PairingStatus
from salut_tui.pairing.trust import TrustedPeer, TrustStore

__all__ = ["PAIR_MAX_MESSAGE", "PAIR_PATH", "PairingError", "PairingService", "PairingStatus"]

DEFAULT_TTL = 300.0
MAX_TTL = 900.0


@dataclass
class _Attempt:
    """Everything one pairing attempt carries between its actions."""

    machine: PairingMachine
    ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse
    code: str
    source: str = ""  # host side: the joiner's IP address, which the limiter keys on
    me: Party | None = None
    them: Party | None = None
    pake: Any = None
    shared: bytes | None = None
    address: str = ""
    reason: FailureReason | None = None  # why it failed (what a reject says)
    retry_after: float = 0.0
    peer: TrustedPeer | None = None

    def transcript(self) -> bytes:
        assert self.me is not None and self.them is not None
        if self.machine.role is Role.JOINER:
            return transcript(self.me, self.them)
        return transcript(self.them, self.me)


class PairingService:
    def __init__(
        self,
        identity: Identity,
        trust: TrustStore,
        *,
        name: str,
        api_port: Callable[[], int],
        on_change: Callable[[PairingStatus], None] = lambda status: None,
        on_paired: Callable[[TrustedPeer], None] = lambda peer: None,
        clock: Clock = time.monotonic,
        step_timeout: float = STEP_TIMEOUT,
    ) -> None:
        self.identity = identity
        self.trust = trust
        self.name = clean_name(name)  # as the other side will see it (and sign it)
        self._api_port = api_port
        self._on_change = on_change
        self._on_paired = on_paired
        self._clock = clock
        self.step_timeout = step_timeout
        self.limiter = SourceLimiter(clock)
        self.machine: PairingMachine | None = None
        self._attempt: _Attempt | None = None  # the exchange in progress, if any
        self._code: str | None = None
        self._expires_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._peer_name = ""
        self._reason: FailureReason | None = None
        self._background: set[asyncio.Task] = set()

    # ---- what the UI and the control routes call --------------------------------------
    def status(self) -> PairingStatus:
        self._check_expiry()
        return self._snapshot()

    def create_code(self, ttl: float = DEFAULT_TTL) -> PairingStatus:
        """Show a new code, replacing one still waiting and ending an exchange in progress:
        the owner is never locked out by what another machine does."""
        m = self.machine
        if m is not None and not m.finished:
            if m.role is Role.JOINER:
                raise PairingError(
                    "this node is joining another one; try again in a moment", "busy"
                )
            self._interrupt(Event.CANCELLED, "cancelled")
        self.machine = PairingMachine(Role.HOST)
        self._code, self._peer_name, self._reason = new_code(), "", None
        ttl = max(1.0, min(ttl, MAX_TTL))
        self._expires_at = self._clock() + ttl
        for action in self.machine.feed(Event.CODE_CREATED):
            if action is Action.START_TIMER:
                # Only a nudge to publish the expiry: `_check_expiry` decides, by the clock.
                self._timer = asyncio.get_running_loop().call_later(ttl, self._check_expiry)
        self._changed()
        return self._snapshot()

    def cancel(self) -> None:
        if self.machine is not None and self.machine.role is Role.HOST:
            self._interrupt(Event.CANCELLED, "cancelled")

    # ---- host side: a peer connected to /salut/pair ------------------------------------
    async def host(self, ws: web.WebSocketResponse, remote_host: str) -> None:
        source = remote_host
        wait = self.limiter.retry_after(source)
        if wait > 0:  # before anything else: a limited source gets no say at all
            await reject(ws, "rate_limited", wait)
            return
        try:
            them = party_from(await receive(ws, "hello", self.step_timeout), self.identity)
        except (PeerLeft, Rejected, TimeoutError):
            await ws.close()
            return
        except (CryptoFailure, ValueError):
            self.limiter.record_failure(source)  # garbage costs its sender, not the code
            await ws.close()
            return
        self._check_expiry()
        m = self.machine
        if m is None or m.role is not Role.HOST or m.state is not State.WAITING or not self._code:
            await reject(ws, "busy" if m is not None and not m.finished else "no_code")
            return
        attempt = _Attempt(m, ws, self._code, source=source, them=them)
        attempt.address = f"{host_for_url(source)}:{them.port}"  # the port is signed
        self._attempt, self._peer_name = attempt, them.name
        await self._feed(attempt, Event.HELLO_RECEIVED)
        if m.state is not State.EXCHANGING or attempt is not self._attempt:
            return  # it left before our PAKE message went out, or the owner ended it
        try:
            confirm = await receive(ws, "confirm", self.step_timeout)
            check_confirm(
                bytes.fromhex(confirm["box"]),
                Role.JOINER,
                them.public_key,
                attempt.shared or b"\0" * 32,
                attempt.transcript(),
            )
        except TimeoutError:
            await self._feed(attempt, Event.TIMED_OUT, "timeout")
        except (PeerLeft, Rejected):
            await self._feed(attempt, Event.PEER_LEFT, "peer_left")
        except (CryptoFailure, KeyError, TypeError, ValueError):
            await self._feed(attempt, Event.CONFIRM_INVALID, "wrong_code")
        else:
            await self._feed(attempt, Event.CONFIRM_VALID)

    # ---- joiner side: this node connects with a code ----------------------------------
    async def join(
        self, session: aiohttp.ClientSession, address: str, code_text: str
    ) -> TrustedPeer:
        code = normalise_code(code_text)
        if code is None:
            raise PairingError(describe("invalid_code"), "invalid_code")
        if self._attempt is not None or (
            self.machine is not None
            and self.machine.role is Role.JOINER
            and not self.machine.finished
        ):
            raise PairingError("a pairing is in progress; try again in a moment", "busy")
        self.cancel()
        machine = PairingMachine(Role.JOINER)
        self.machine, self._peer_name, self._reason = machine, address, None
        try:
            ws = await session.ws_connect(
                f"http://{address}{PAIR_PATH}",
                timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                heartbeat=None,
                max_msg_size=PAIR_MAX_MESSAGE,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.machine = None
            raise PairingError(f"{describe('unreachable', address)}: {exc}", "unreachable") from exc
        attempt = _Attempt(machine, ws, code, address=address)
        attempt.pake = start_pake(Role.JOINER, code)
        attempt.me = self._me(attempt.pake.start())
        async with ws:
            await self._feed(attempt, Event.JOIN_REQUESTED)
            await self._joiner_step(attempt, "pake", Event.PAKE_RECEIVED)
            if machine.state is State.CONFIRM_SENT:
                await self._joiner_step(attempt, "confirm", Event.CONFIRM_VALID)
        if machine.state is not State.PAIRED or attempt.peer is None:
            reason = attempt.reason or "failed"
            message = describe(reason, address, attempt.retry_after)
            raise PairingError(message, reason, attempt.retry_after)
        return attempt.peer

    async def _joiner_step(self, attempt: _Attempt, expected: str, success: Event) -> None:
        try:
            body = await receive(attempt.ws, expected, self.step_timeout)
            if expected == "pake":
                attempt.them = party_from(body, self.identity)
                attempt.shared = finish_pake(attempt.pake, attempt.them.pake)
            else:
                assert attempt.them is not None and attempt.shared is not None
                check_confirm(
                    bytes.fromhex(body["box"]),
                    Role.HOST,
                    attempt.them.public_key,
                    attempt.shared,
                    attempt.transcript(),
                )
        except Rejected as exc:
            attempt.retry_after = exc.retry_after
            await self._feed(attempt, Event.REJECTED, exc.reason)
        except TimeoutError:
            await self._feed(attempt, Event.TIMED_OUT, "timeout")
        except PeerLeft:
            await self._feed(attempt, Event.PEER_LEFT, "peer_left")
        except (CryptoFailure, KeyError, TypeError, ValueError):
            await self._feed(attempt, Event.CONFIRM_INVALID, "wrong_code")
        else:
            await self._feed(attempt, success)

    # ---- actions -----------------------------------------------------------------------
    async def _feed(
        self, attempt: _Attempt, event: Event, reason: FailureReason | None = None
    ) -> None:
        if attempt.machine.finished or (
            attempt.machine.role is Role.HOST and attempt is not self._attempt
        ):
            return  # ended meanwhile (the owner cancelled, the code expired)
        if reason is not None:
            attempt.reason = reason
        actions = attempt.machine.feed(event)
        await self._perform_all(attempt, actions)

    async def _perform_all(self, attempt: _Attempt, actions: tuple[Action, ...]) -> None:
        socket_lost = False
        for action in actions:
            if action is Action.CLOSE:
                continue
            try:
                await self._perform(attempt, action)
            except ConnectionError:
                # The other side hung up under a send. The actions after it (count the failure,
                # burn the code) still run, and the attempt then ends: it must never stay
                # half-way, or every later code would be refused as "busy".
                socket_lost = True
        state = attempt.machine.state
        if attempt is self._attempt and state is not State.EXCHANGING:
            self._attempt = None  # the host is free again (waiting, or finished)
            if state is State.WAITING:
                self._peer_name = ""
        self._reason = attempt.reason if state is State.FAILED else None
        self._changed()  # before closing: the close handshake waits on the other side
        if Action.CLOSE in actions:
            await self._perform(attempt, Action.CLOSE)
        if socket_lost and state in (State.EXCHANGING, State.HELLO_SENT, State.CONFIRM_SENT):
            await self._feed(attempt, Event.PEER_LEFT, attempt.reason or "peer_left")

    async def _perform(self, attempt: _Attempt, action: Action) -> None:
        ws = attempt.ws
        if action is Action.BURN_CODE:
            self._burn()
        elif action is Action.SEND_HELLO:
            assert attempt.me is not None
            await ws.send_json({"type": "hello", **attempt.me.to_json()})
        elif action is Action.SEND_PAKE:
            assert attempt.them is not None
            attempt.pake = start_pake(Role.HOST, attempt.code)
            attempt.me = self._me(attempt.pake.start())
            try:
                attempt.shared = finish_pake(attempt.pake, attempt.them.pake)
            except CryptoFailure:
                attempt.shared = None  # their confirm cannot verify; the attempt fails there
            await ws.send_json({"type": "pake", **attempt.me.to_json()})
        elif action is Action.SEND_CONFIRM:
            assert attempt.shared is not None
            box = make_confirm(
                self.identity, attempt.machine.role, attempt.shared, attempt.transcript()
            )
            await ws.send_json({"type": "confirm", "box": box.hex()})
        elif action is Action.SEND_REJECT:
            if not ws.closed:
                await ws.send_json({"type": "reject", "reason": attempt.reason or "failed"})
        elif action is Action.STORE_TRUST:
            assert attempt.them is not None
            attempt.peer = self.trust.add(
                attempt.them.public_key, attempt.them.name, attempt.address
            )
            if attempt.source:
                self.limiter.record_success(attempt.source)
            self._on_paired(attempt.peer)
        elif action is Action.COUNT_FAILURE:
            self.limiter.record_failure(attempt.source)
        elif action is Action.CLOSE:
            await ws.close()
        else:  # SHOW_CODE and START_TIMER only happen in create_code
            raise AssertionError(f"unexpected pairing action {action}")

    def _me(self, pake_message: bytes) -> Party:
        identity = self.identity
        return Party(
            identity.node_id, self.name, identity.public_key, pake_message, self._api_port()
        )

    # ---- the owner's and the clock's interruptions (synchronous callers) ----------------
    def _interrupt(self, event: Event, reason: FailureReason) -> None:
        """Cancel or expire the host's code, ending an exchange in progress."""
        m = self.machine
        if m is None or m.role is not Role.HOST or m.finished:
            return
        attempt = self._attempt
        actions = m.feed(event)
        if Action.BURN_CODE in actions:
            self._burn()
        if attempt is not None:
            self._attempt = None
            attempt.reason = reason
            rest = tuple(a for a in actions if a is not Action.BURN_CODE)
            task = asyncio.get_running_loop().create_task(self._tell(attempt, rest))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        self._reason = None
        self._changed()

    async def _tell(self, attempt: _Attempt, actions: tuple[Action, ...]) -> None:
        for action in actions:
            try:
                await self._perform(attempt, action)
            except ConnectionError:
                return

    def _check_expiry(self) -> None:
        if self._code is not None and self._clock() >= self._expires_at:
            self._interrupt(Event.CODE_EXPIRED, "expired")

    def _burn(self) -> None:
        self._code = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _snapshot(self) -> PairingStatus:
        m = self.machine
        waiting = m is not None and m.state is State.WAITING and self._code is not None
        return PairingStatus(
            role=m.role if m else None,
            state=m.state if m else State.IDLE,
            code=self._code if waiting else None,
            expires_in=round(max(0.0, self._expires_at - self._clock()), 1) if waiting else None,
            peer=self._peer_name or None,
            failures=self.limiter.failures(),
            retry_after=round(self.limiter.longest_wait(), 1),
            reason=self._reason,
        )

    def _changed(self) -> None:
        self._on_change(self._snapshot())
