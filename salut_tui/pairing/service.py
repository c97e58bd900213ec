"""Runs pairing attempts: the host side (a code is shown, a peer connects to /salut/pair) and the
joiner side (this node connects to a peer with the code a person typed). The state machine in
`machine.py` decides; this module performs its actions over a websocket.

One attempt at a time on a node; each code allows one attempt and dies after it or after its
time-to-live; failures back off (see `limiter.py`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
from salut_tui.pairing.keys import CryptoFailure, fingerprint
from salut_tui.pairing.limiter import FailureLimiter
from salut_tui.pairing.machine import Action, Event, PairingMachine, Role, State
from salut_tui.pairing.trust import TrustedPeer, TrustStore

PAIR_PATH = "/salut/pair"
STEP_TIMEOUT = 10.0  # seconds for the other side's next message
DEFAULT_TTL = 300.0
MAX_TTL = 900.0


class PairingError(Exception):
    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = (
            reason  # wrong_code, no_code, busy, rate_limited, invalid_code, unreachable...
        )


class _PeerLeft(Exception):
    pass


class _Rejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Attempt:
    """Everything one pairing attempt carries between its actions."""

    machine: PairingMachine
    ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse
    code: str
    me: Party | None = None
    them: Party | None = None
    pake: Any = None
    shared: bytes | None = None
    address: str = ""
    reject_reason: str = "wrong_code"
    peer: TrustedPeer | None = None
    extra: dict = field(default_factory=dict)

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
        on_change: Callable[[dict], None] = lambda status: None,
        on_paired: Callable[[TrustedPeer], None] = lambda peer: None,
    ) -> None:
        self.identity = identity
        self.trust = trust
        self.name = name
        self._api_port = api_port
        self._on_change = on_change
        self._on_paired = on_paired
        self.limiter = FailureLimiter()
        self.machine: PairingMachine | None = None
        self._code: str | None = None
        self._expires_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._peer_name = ""
        self._detail = ""

    # ---- what the UI and the control routes call --------------------------------------
    def status(self) -> dict:
        m = self.machine
        waiting = m is not None and m.state is State.WAITING
        return {
            "role": m.role.value if m else None,
            "state": m.state.value if m else State.IDLE.value,
            "code": self._code if waiting else None,
            "expires_in": round(max(0.0, self._expires_at - time.time()), 1) if waiting else None,
            "peer": self._peer_name or None,
            "failures": self.limiter.failures,
            "retry_after": round(self.limiter.retry_after(), 1),
            "detail": self._detail,
        }

    def create_code(self, ttl: float = DEFAULT_TTL) -> dict:
        """Show a new code (replacing one still waiting). Returns the status with the code."""
        if self.machine is not None and not self.machine.finished:
            if self.machine.state is not State.WAITING:
                raise PairingError("a pairing is in progress; try again in a moment", "busy")
            self.cancel()
        self._check_rate()
        self.machine = PairingMachine(Role.HOST)
        self._code, self._peer_name, self._detail = new_code(), "", ""
        self._expires_at = time.time() + max(1.0, min(ttl, MAX_TTL))
        for action in self.machine.feed(Event.CODE_CREATED):
            if action is Action.START_TIMER:
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(
                    self._expires_at - time.time(), self._expire, self.machine
                )
        self._changed()
        return self.status()

    def cancel(self) -> None:
        if self.machine is not None and self.machine.state is State.WAITING:
            self.machine.feed(Event.CANCELLED)
            self._burn()
            self._detail = "code cancelled"
            self._changed()

    # ---- host side: a peer connected to /salut/pair ------------------------------------
    async def host(self, ws: web.WebSocketResponse, remote_host: str) -> None:
        try:
            hello = await _receive(ws, "hello")
            them = _party(hello, self.identity)
            port = int(hello["port"])
        except (_PeerLeft, _Rejected, CryptoFailure, KeyError, TypeError, ValueError, TimeoutError):
            await ws.close()
            return
        m = self.machine
        if (
            m is None
            or m.role is not Role.HOST
            or m.state is not State.WAITING
            or self._code is None
        ):
            reason = "busy" if m is not None and not m.finished else "no_code"
            await ws.send_json({"type": "reject", "reason": reason})
            await ws.close()
            return
        attempt = _Attempt(
            m, ws, self._code, them=them, address=f"{_host_for_url(remote_host)}:{port}"
        )
        self._peer_name = them.name
        await self._feed(attempt, Event.HELLO_RECEIVED)
        if m.finished:  # the joiner left before our PAKE message went out
            return
        try:
            confirm = await _receive(ws, "confirm")
            check_confirm(
                bytes.fromhex(confirm["box"]),
                Role.JOINER,
                them.public_key,
                attempt.shared or b"\0" * 32,
                attempt.transcript(),
            )
        except TimeoutError:
            await self._feed(attempt, Event.TIMED_OUT)
        except (_PeerLeft, _Rejected):
            await self._feed(attempt, Event.PEER_LEFT)
        except (CryptoFailure, KeyError, TypeError, ValueError):
            await self._feed(attempt, Event.CONFIRM_INVALID)
        else:
            await self._feed(attempt, Event.CONFIRM_VALID)

    # ---- joiner side: this node connects with a code ----------------------------------
    async def join(
        self, session: aiohttp.ClientSession, address: str, code_text: str
    ) -> TrustedPeer:
        code = normalise_code(code_text)
        if code is None:
            raise PairingError(
                f"'{code_text}' is not a pairing code (like 42-maple-rocket)", "invalid_code"
            )
        if (
            self.machine is not None
            and not self.machine.finished
            and self.machine.state is not State.WAITING
        ):
            raise PairingError("a pairing is in progress; try again in a moment", "busy")
        self._check_rate()
        self.cancel()
        machine = PairingMachine(Role.JOINER)
        self.machine, self._peer_name, self._detail = machine, address, ""
        try:
            ws = await session.ws_connect(
                f"http://{address}{PAIR_PATH}",
                timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                heartbeat=None,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.machine = None
            raise PairingError(f"cannot reach {address}: {exc}", "unreachable") from exc
        attempt = _Attempt(machine, ws, code, address=address)
        attempt.pake = start_pake(Role.JOINER, code)
        attempt.me = Party(
            self.identity.node_id, self.name, self.identity.public_key, attempt.pake.start()
        )
        async with ws:
            await self._feed(attempt, Event.JOIN_REQUESTED)
            await self._joiner_step(attempt, "pake", Event.PAKE_RECEIVED)
            if machine.state is State.CONFIRM_SENT:
                await self._joiner_step(attempt, "confirm", Event.CONFIRM_VALID)
        if machine.state is not State.PAIRED or attempt.peer is None:
            reason = attempt.extra.get("reason", "failed")
            raise PairingError(_failure_message(reason, address), reason)
        return attempt.peer

    async def _joiner_step(self, attempt: _Attempt, expected: str, success: Event) -> None:
        try:
            body = await _receive(attempt.ws, expected)
            if expected == "pake":
                attempt.them = _party(body, self.identity)
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
        except _Rejected as exc:
            attempt.extra["reason"] = exc.reason
            await self._feed(attempt, Event.REJECTED)
        except TimeoutError:
            attempt.extra["reason"] = "timeout"
            await self._feed(attempt, Event.TIMED_OUT)
        except _PeerLeft:
            attempt.extra["reason"] = "peer_left"
            await self._feed(attempt, Event.PEER_LEFT)
        except (CryptoFailure, KeyError, TypeError, ValueError):
            attempt.extra["reason"] = "wrong_code"
            await self._feed(attempt, Event.CONFIRM_INVALID)
        else:
            await self._feed(attempt, success)

    # ---- actions -----------------------------------------------------------------------
    async def _feed(self, attempt: _Attempt, event: Event) -> None:
        actions = attempt.machine.feed(event)
        socket_lost = False
        for action in actions:
            if action is Action.CLOSE:
                continue
            try:
                await self._perform(attempt, action)
            except ConnectionError:
                # The other side hung up under a send. The actions after it (count the failure,
                # burn the code) still run, and the attempt then fails: it must never stay
                # half-way, or every later code would be refused as "busy".
                socket_lost = True
        self._detail = (
            attempt.extra.get("reason", "") if attempt.machine.state is State.FAILED else ""
        )
        self._changed()  # before closing: the close handshake waits on the other side
        if Action.CLOSE in actions:
            await self._perform(attempt, Action.CLOSE)
        if socket_lost and not attempt.machine.finished:
            attempt.extra.setdefault("reason", "peer_left")
            await self._feed(attempt, Event.PEER_LEFT)

    async def _perform(self, attempt: _Attempt, action: Action) -> None:
        ws = attempt.ws
        if action is Action.BURN_CODE:
            self._burn()
        elif action is Action.SEND_HELLO:
            assert attempt.me is not None
            await ws.send_json({"type": "hello", **attempt.me.to_json(), "port": self._api_port()})
        elif action is Action.SEND_PAKE:
            assert attempt.them is not None
            attempt.pake = start_pake(Role.HOST, attempt.code)
            attempt.me = Party(
                self.identity.node_id, self.name, self.identity.public_key, attempt.pake.start()
            )
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
            attempt.extra.setdefault("reason", attempt.reject_reason)
            if not ws.closed:
                await ws.send_json({"type": "reject", "reason": attempt.extra["reason"]})
        elif action is Action.STORE_TRUST:
            assert attempt.them is not None
            attempt.peer = self.trust.add(
                attempt.them.public_key, attempt.them.name, attempt.address
            )
            self.limiter.record_success()
            self._on_paired(attempt.peer)
        elif action is Action.COUNT_FAILURE:
            self.limiter.record_failure()
        elif action is Action.CLOSE:
            await ws.close()
        else:  # SHOW_CODE and START_TIMER only happen in create_code
            raise AssertionError(f"unexpected pairing action {action}")

    def _expire(self, machine: PairingMachine) -> None:
        if machine is self.machine and machine.state is State.WAITING:
            machine.feed(Event.TIMED_OUT)
            self._burn()
            self._detail = "code expired"
            self._changed()

    def _burn(self) -> None:
        self._code = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_rate(self) -> None:
        wait = self.limiter.retry_after()
        if wait > 0:
            raise PairingError(
                f"too many failed pairings; try again in {wait:.0f} s", "rate_limited"
            )

    def _changed(self) -> None:
        self._on_change(self.status())


def _party(body: dict, me: Identity) -> Party:
    party = Party.from_json(body)
    if fingerprint(party.public_key) != party.node_id or party.node_id == me.node_id:
        raise CryptoFailure("peer id does not match its key")
    return party


async def _receive(ws: Any, expected: str) -> dict:
    msg = await ws.receive(timeout=STEP_TIMEOUT)
    if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
        raise _PeerLeft()
    body = json.loads(msg.data)
    if not isinstance(body, dict):
        raise CryptoFailure("malformed pairing message")
    if body.get("type") == "reject":
        raise _Rejected(str(body.get("reason", "rejected")))
    if body.get("type") != expected:
        raise CryptoFailure(f"expected {expected}, got {body.get('type')}")
    return body


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _failure_message(reason: str, address: str) -> str:
    return {
        "wrong_code": "the code was wrong (it is now used up: ask for a new one)",
        "no_code": f"{address} has no pairing code waiting (ask it for a new one)",
        "busy": f"{address} is pairing with someone else; try again in a moment",
        "rate_limited": f"{address} refuses pairing for a while after failed attempts",
        "timeout": f"{address} stopped answering",
        "peer_left": f"{address} closed the connection",
    }.get(reason, f"pairing with {address} failed ({reason})")
