"""The pairing protocol end to end over real websockets (two or three identities in-process):
right code, wrong code, expired code, reused code, a third party butting in, busy, back-off."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from salut_tui.pairing.exchange import Party, start_pake
from salut_tui.pairing.identity import Identity
from salut_tui.pairing.machine import Event, Role, State
from salut_tui.pairing.service import PAIR_PATH, PairingError, PairingService, _Attempt
from salut_tui.pairing.trust import TrustStore


def wrong(code: str) -> str:
    number, w1, w2 = code.split("-")
    return f"{number}-{w1}-{'zebra' if w2 != 'zebra' else 'yogurt'}"


class Side:
    def __init__(self, root: Path, name: str) -> None:
        self.identity = Identity.generate()
        self.trust = TrustStore(root / name)
        self.states: list[str] = []
        self.service = PairingService(
            self.identity, self.trust, name=name, api_port=lambda: 7258,
            on_change=lambda s: self.states.append(s["state"]),
        )  # fmt: skip


@pytest.fixture
async def net(tmp_path: Path):  # type: ignore[no-untyped-def]
    host, joiner, intruder = Side(tmp_path, "A"), Side(tmp_path, "B"), Side(tmp_path, "C")

    async def pair(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await host.service.host(ws, request.remote or "")
        return ws

    app = web.Application()
    app.router.add_get(PAIR_PATH, pair)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    address = f"127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    session = aiohttp.ClientSession()
    yield host, joiner, intruder, address, session
    await session.close()
    await runner.cleanup()


async def test_right_code_pairs_both_sides(net) -> None:  # type: ignore[no-untyped-def]
    host, joiner, _, address, session = net
    code = host.service.create_code()["code"]
    peer = await joiner.service.join(session, address, code.replace("-", " ").upper())
    assert peer.node_id == host.identity.node_id and peer.address == address
    stored = host.trust.get(joiner.identity.node_id)
    assert stored is not None and stored.key_bytes == joiner.identity.public_key
    assert stored.address == "127.0.0.1:7258"  # where the joiner's API listens
    assert host.states == ["waiting", "exchanging", "paired"]
    assert joiner.states == ["hello_sent", "confirm_sent", "paired"]
    assert TrustStore(joiner.trust.path.parent).get(host.identity.node_id) is not None  # on disk


async def test_wrong_code_fails_both_and_kills_the_code(net) -> None:  # type: ignore[no-untyped-def]
    host, joiner, _, address, session = net
    code = host.service.create_code()["code"]
    with pytest.raises(PairingError) as failed:
        await joiner.service.join(session, address, wrong(code))
    assert failed.value.reason == "wrong_code"
    assert host.states == ["waiting", "exchanging", "failed"]
    assert host.trust.all() == [] and joiner.trust.all() == []
    with pytest.raises(PairingError) as again:  # the right code is dead now
        await joiner.service.join(session, address, code)
    assert again.value.reason == "no_code"
    assert host.service.status()["failures"] == 1


async def test_expired_code_is_refused(net) -> None:  # type: ignore[no-untyped-def]
    host, joiner, _, address, session = net
    status = host.service.create_code(ttl=1)
    assert status["state"] == "waiting" and 0 < status["expires_in"] <= 1
    await asyncio.sleep(1.2)
    assert host.service.status()["state"] == "expired" and host.service.status()["code"] is None
    with pytest.raises(PairingError) as failed:
        await joiner.service.join(session, address, status["code"])
    assert failed.value.reason == "no_code"


async def test_reused_code_is_refused(net) -> None:  # type: ignore[no-untyped-def]
    host, joiner, intruder, address, session = net
    code = host.service.create_code()["code"]
    await joiner.service.join(session, address, code)
    with pytest.raises(PairingError) as failed:
        await intruder.service.join(session, address, code)
    assert failed.value.reason == "no_code"
    assert intruder.trust.all() == [] and intruder.identity.node_id not in host.trust


async def test_third_node_butting_in(net) -> None:  # type: ignore[no-untyped-def]
    host, joiner, intruder, address, session = net
    code = host.service.create_code()["code"]
    # The intruder grabs the code slot first with a guess: it gets its one try, and loses.
    with pytest.raises(PairingError):
        await intruder.service.join(session, address, wrong(code))
    with pytest.raises(PairingError) as failed:
        await joiner.service.join(session, address, code)
    assert failed.value.reason == "no_code"
    assert host.trust.all() == []
    # With a new code, an intruder arriving during an exchange is told the node is busy.
    code = host.service.create_code()["code"]
    ws = await session.ws_connect(f"http://{address}{PAIR_PATH}")
    pake = start_pake(Role.JOINER, code)
    me = Party(joiner.identity.node_id, "B", joiner.identity.public_key, pake.start())
    await ws.send_json({"type": "hello", **me.to_json(), "port": 1})
    assert (await ws.receive_json())["type"] == "pake"
    assert host.service.status()["state"] == State.EXCHANGING.value
    with pytest.raises(PairingError) as busy:
        await intruder.service.join(session, address, code)
    assert busy.value.reason == "busy"
    with pytest.raises(PairingError) as busy_code:
        host.service.create_code()
    assert busy_code.value.reason == "busy"
    await ws.close()


async def test_repeated_failures_are_rate_limited(net) -> None:  # type: ignore[no-untyped-def]
    host, joiner, _, address, session = net
    for _ in range(2):
        code = host.service.create_code()["code"]
        with pytest.raises(PairingError):
            await joiner.service.join(session, address, wrong(code))
    with pytest.raises(PairingError) as limited:
        host.service.create_code()
    assert limited.value.reason == "rate_limited"
    assert host.service.status()["retry_after"] > 0


async def test_code_that_is_not_a_code_never_touches_the_network(net) -> None:  # type: ignore[no-untyped-def]
    host, joiner, _, address, session = net
    host.service.create_code()
    with pytest.raises(PairingError) as failed:
        await joiner.service.join(session, address, "hello world")
    assert failed.value.reason == "invalid_code"
    assert host.service.status()["state"] == "waiting"


async def test_joiner_gone_before_the_answer_fails_the_attempt_not_the_host(tmp_path: Path) -> None:
    """A hello, then a socket that is closed when the host answers: the send fails, and the
    attempt must still end (failed, counted), or every later code would be refused as busy."""
    host = Side(tmp_path, "A")
    code = host.service.create_code()["code"]
    joiner = Identity.generate()
    hello = Party(joiner.node_id, "B", joiner.public_key, start_pake(Role.JOINER, code).start())
    answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def pair(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close()  # what the host finds when the joiner hung up right after its hello
        attempt = _Attempt(host.service.machine, ws, code, them=hello, address="127.0.0.1:1")  # type: ignore[arg-type]
        await host.service._feed(attempt, Event.HELLO_RECEIVED)
        answered.set_result(None)
        return ws

    app = web.Application()
    app.router.add_get(PAIR_PATH, pair)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{port}{PAIR_PATH}") as ws,
    ):
        await ws.receive()
    await asyncio.wait_for(answered, 5)
    await runner.cleanup()

    status = host.service.status()
    assert (status["state"], status["detail"], status["failures"]) == ("failed", "peer_left", 1)
    assert host.service.create_code()["state"] == "waiting"  # not stuck as "busy"
