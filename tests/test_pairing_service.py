"""The pairing protocol end to end over real websockets (two or three identities in-process):
right code, wrong code, expired code, reused code, a third party butting in, busy, back-off per
source, and the denial of service a LAN host could cause before (hellos without a guess burning
the code, its failures locking the owner out). Time is an injected clock: nothing sleeps for a
code to expire. Several sources are several loopback addresses (127.0.0.x)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from salut_tui.pairing.exchange import Party, start_pake
from salut_tui.pairing.identity import Identity
from salut_tui.pairing.machine import Event, Role, State
from salut_tui.pairing.service import (
    PAIR_PATH,
    PairingError,
    PairingService,
    PairingStatus,
    _Attempt,
)
from salut_tui.pairing.trust import TrustStore
from tests.helpers import until


def wrong(code: str) -> str:
    number, w1, w2 = code.split("-")
    return f"{number}-{w1}-{'zebra' if w2 != 'zebra' else 'yogurt'}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Side:
    def __init__(self, root: Path, name: str, clock: FakeClock | None = None) -> None:
        self.identity = Identity.generate()
        self.trust = TrustStore(root / name)
        self.states: list[str] = []
        self.clock = clock or FakeClock()
        self.service = PairingService(
            self.identity, self.trust, name=name, api_port=lambda: 7258,
            on_change=self._changed, clock=self.clock,
        )  # fmt: skip

    def _changed(self, status: PairingStatus) -> None:
        self.states.append(status.state.value)


def session_from(source: str) -> aiohttp.ClientSession:
    """A client whose connections come from `source` (a loopback address)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0)))


@pytest.fixture
async def net(tmp_path: Path, aiohttp_server):  # type: ignore[no-untyped-def]
    host, joiner, intruder = Side(tmp_path, "A"), Side(tmp_path, "B"), Side(tmp_path, "C")

    async def pair(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await host.service.host(ws, request.remote or "")
        return ws

    app = web.Application()
    app.router.add_get(PAIR_PATH, pair)
    server = await aiohttp_server(app)
    address = f"127.0.0.1:{server.port}"
    session = session_from("127.0.0.1")
    yield host, joiner, intruder, address, session
    await session.close()


async def raw_hello(session: aiohttp.ClientSession, address: str, code: str, port: int = 1):  # type: ignore[no-untyped-def]
    """A joiner that sends its hello (no guess can be checked yet) and reads the PAKE answer."""
    ws = await session.ws_connect(f"http://{address}{PAIR_PATH}")
    me = Identity.generate()
    hello = Party(me.node_id, "X", me.public_key, start_pake(Role.JOINER, code).start(), port)
    await ws.send_json({"type": "hello", **hello.to_json()})
    return ws, await ws.receive_json(timeout=5)


async def test_right_code_pairs_both_sides(net) -> None:  # type: ignore[no-untyped-def]
    host, joiner, _, address, session = net
    code = host.service.create_code().code
    peer = await joiner.service.join(session, address, code.replace("-", " ").upper())
    assert peer.node_id == host.identity.node_id and peer.address == address
    stored = host.trust.get(joiner.identity.node_id)
    assert stored is not None and stored.key_bytes == joiner.identity.public_key
    assert stored.address == "127.0.0.1:7258"  # where the joiner's API listens (a signed port)
    assert host.states == ["waiting", "exchanging", "paired"]
    assert joiner.states == ["hello_sent", "confirm_sent", "paired"]
    assert TrustStore(joiner.trust.path.parent).get(host.identity.node_id) is not None  # on disk


async def test_wrong_code_fails_both_and_kills_the_code(net) -> None:  # type: ignore[no-untyped-def]
    host, joiner, _, address, session = net
    code = host.service.create_code().code
    with pytest.raises(PairingError) as failed:
        await joiner.service.join(session, address, wrong(code))
    assert failed.value.reason == "wrong_code" and "code was wrong" in str(failed.value)
    assert host.states == ["waiting", "exchanging", "failed"]
    assert host.service.status().reason == "wrong_code"
    assert host.trust.all() == [] and joiner.trust.all() == []
    with pytest.raises(PairingError) as again:  # the right code is dead now
        await joiner.service.join(session, address, code)
    assert again.value.reason == "no_code"
    assert host.service.status().failures == 1


async def test_expired_code_is_refused(net) -> None:  # type: ignore[no-untyped-def]
    host, joiner, _, address, session = net
    status = host.service.create_code(ttl=60)
    assert status.state is State.WAITING and status.expires_in == 60
    host.clock.advance(59.5)
    assert host.service.status().code == status.code
    host.clock.advance(1)
    assert host.service.status().state is State.EXPIRED and host.service.status().code is None
    with pytest.raises(PairingError) as failed:
        await joiner.service.join(session, address, status.code)
    assert failed.value.reason == "no_code"


async def test_reused_code_is_refused(net) -> None:  # type: ignore[no-untyped-def]
    host, joiner, intruder, address, session = net
    code = host.service.create_code().code
    await joiner.service.join(session, address, code)
    with pytest.raises(PairingError) as failed:
        await intruder.service.join(session, address, code)
    assert failed.value.reason == "no_code"
    assert intruder.trust.all() == [] and intruder.identity.node_id not in host.trust


async def test_third_node_butting_in(net) -> None:  # type: ignore[no-untyped-def]
    host, joiner, intruder, address, session = net
    code = host.service.create_code().code
    # The intruder uses the code first with a guess: that is a real attempt, and it loses.
    with pytest.raises(PairingError):
        await intruder.service.join(session, address, wrong(code))
    with pytest.raises(PairingError) as failed:
        await joiner.service.join(session, address, code)
    assert failed.value.reason == "no_code"
    assert host.trust.all() == []
    # With a new code, someone arriving during an exchange is told the node is busy...
    code = host.service.create_code().code
    ws, answer = await raw_hello(session, address, code)
    assert answer["type"] == "pake" and host.service.status().state is State.EXCHANGING
    with pytest.raises(PairingError) as busy:
        await intruder.service.join(session, address, code)
    assert busy.value.reason == "busy"
    # ... but the owner is not: a new code ends the exchange, whose joiner hears why.
    fresh = host.service.create_code()
    assert fresh.state is State.WAITING and fresh.code and fresh.code != code
    assert (await ws.receive_json(timeout=5)) == {"type": "reject", "reason": "cancelled"}
    await ws.close()
    await joiner.service.join(session, address, fresh.code)
    assert joiner.identity.node_id in host.trust


async def test_hellos_without_a_guess_never_spend_the_code(net) -> None:  # type: ignore[no-untyped-def]
    """Any LAN host could burn the waiting code with a bare hello; now it only slows itself."""
    host, joiner, _, address, session = net
    code = host.service.create_code().code
    async with session_from("127.0.0.3") as rogue:
        for _ in range(2):
            ws, answer = await raw_hello(rogue, address, code)
            assert answer["type"] == "pake"
            await ws.close()  # leaves before any confirm: nothing was guessed
            await until(lambda: host.service.status().state is State.WAITING, 2.0)
            assert host.service.status().code == code
        # Its abandoned exchanges count against it alone: it is refused for a while...
        ws = await rogue.ws_connect(f"http://{address}{PAIR_PATH}")
        refusal = await ws.receive_json(timeout=5)
        assert refusal["reason"] == "rate_limited" and refusal["retry_after"] > 0
        await ws.close()
    status = host.service.status()
    assert (status.state, status.code, status.failures) == (State.WAITING, code, 2)
    # ... while the real joiner, from elsewhere, pairs with the same code.
    await joiner.service.join(session, address, code)
    assert joiner.identity.node_id in host.trust


async def test_a_stalled_exchange_times_out_back_to_waiting(net) -> None:  # type: ignore[no-untyped-def]
    host, joiner, _, address, session = net
    host.service.step_timeout = 0.3
    code = host.service.create_code().code
    async with session_from("127.0.0.4") as staller:
        ws, answer = await raw_hello(staller, address, code)
        assert answer["type"] == "pake"
        assert (await ws.receive_json(timeout=5)) == {"type": "reject", "reason": "timeout"}
        await ws.close()
    assert host.service.status().code == code
    await joiner.service.join(session, address, code)


async def test_failures_back_off_per_source_and_never_lock_out_the_owner(net) -> None:  # type: ignore[no-untyped-def]
    host, joiner, intruder, address, session = net
    async with session_from("127.0.0.2") as attacker:
        for _ in range(2):
            code = host.service.create_code().code  # the owner is never refused
            with pytest.raises(PairingError):
                await intruder.service.join(attacker, address, wrong(code))
        code = host.service.create_code().code
        with pytest.raises(PairingError) as limited:
            await intruder.service.join(attacker, address, code)
    assert limited.value.reason == "rate_limited" and limited.value.retry_after > 0
    assert "too many failed pairings" in str(limited.value)
    status = host.service.status()
    assert status.retry_after > 0 and status.failures == 2 and status.code == code
    # The limited source's refusal did not touch the code: another machine pairs with it.
    await joiner.service.join(session, address, code)
    assert joiner.identity.node_id in host.trust
    host.clock.advance(1.1)  # its back-off (1 s after the second failure) is over
    assert host.service.status().retry_after == 0


async def test_code_that_is_not_a_code_never_touches_the_network(net) -> None:  # type: ignore[no-untyped-def]
    host, joiner, _, address, session = net
    host.service.create_code()
    with pytest.raises(PairingError) as failed:
        await joiner.service.join(session, address, "hello world")
    assert failed.value.reason == "invalid_code"
    assert host.service.status().state is State.WAITING


async def test_joiner_gone_before_the_answer_fails_the_attempt_not_the_host(
    tmp_path: Path, aiohttp_server
) -> None:
    """A hello, then a socket that is closed when the host answers: the send fails, and the
    attempt must still end (counted against its source), or every later code would be refused
    as busy. The code was never tried, so it is still waiting."""
    host = Side(tmp_path, "A")
    code = host.service.create_code().code
    assert code is not None
    joiner = Identity.generate()
    pake = start_pake(Role.JOINER, code).start()
    hello = Party(joiner.node_id, "B", joiner.public_key, pake, 7258)
    answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def pair(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close()  # what the host finds when the joiner hung up right after its hello
        assert host.service.machine is not None
        attempt = _Attempt(host.service.machine, ws, code, source="127.0.0.1", them=hello)
        host.service._attempt = attempt
        await host.service._feed(attempt, Event.HELLO_RECEIVED)
        answered.set_result(None)
        return ws

    app = web.Application()
    app.router.add_get(PAIR_PATH, pair)
    server = await aiohttp_server(app)
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{server.port}{PAIR_PATH}") as ws,
    ):
        await ws.receive()
    await asyncio.wait_for(answered, 5)
    await server.close()

    status = host.service.status()
    assert (status.state, status.code, status.failures) == (State.WAITING, code, 1)
    assert host.service.create_code().state is State.WAITING  # not stuck as "busy"
