"""Byte tunnels over real peer links: bytes both ways intact, close from either end, credit
flow control (a sender the receiver does not read stops at the window), refusal, link loss, a
peer that ignores the window, and the link staying responsive while a tunnel is saturated."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from salut_tui.cluster.frames import Kind
from salut_tui.cluster.link import LinkLost
from salut_tui.cluster.tunnel import (
    TUNNEL_FRAME,
    TUNNEL_WINDOW,
    Tunnel,
    TunnelClosed,
    TunnelRefused,
)
from tests.link_mesh import Mesh


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    built = await Mesh.build(tmp_path, ["a", "b"])
    yield built
    await built.close()


async def _read_all(tunnel: Tunnel) -> bytes:
    parts = []
    while chunk := await tunnel.receive():
        parts.append(chunk)
    return b"".join(parts)


async def test_bytes_flow_both_ways_and_either_end_closes(mesh: Mesh) -> None:
    a, b = mesh.nodes
    seen: dict = {}

    async def echo_reversed(peer: str, method: str, body: dict, tunnel: Tunnel) -> None:
        seen.update(peer=peer, method=method, body=body)
        await tunnel.accept()
        data = await _read_all(tunnel)  # until the opener closes
        assert tunnel.closed
        seen["data"] = data
        with pytest.raises(TunnelClosed):
            await tunnel.send(b"too late")

    b.tunnels = echo_reversed
    tunnel = await mesh.link(a, b).open_tunnel("echo", {"x": 1})
    payload = os.urandom(3 * TUNNEL_WINDOW + 12345)  # several windows, many frames
    await tunnel.send(payload)
    await tunnel.close()
    for _ in range(200):
        if "data" in seen:
            break
        await asyncio.sleep(0.01)
    assert seen == {"peer": a.node_id, "method": "echo", "body": {"x": 1}, "data": payload}

    # The acceptor closes this time, after sending: the opener gets every byte, then b"".
    async def send_then_close(peer: str, method: str, body: dict, tunnel: Tunnel) -> None:
        await tunnel.accept()
        await tunnel.send(bytes(body["n"]))
        await tunnel.send(b"end")

    b.tunnels = send_then_close
    tunnel = await mesh.link(a, b).open_tunnel("send", {"n": 200_000})
    assert await _read_all(tunnel) == bytes(200_000) + b"end"
    assert tunnel.closed and tunnel.bytes_received == 200_003
    assert mesh.link(a, b)._tunnels == {} and mesh.link(b, a)._tunnels == {}


async def test_a_sender_stops_at_the_window_until_the_receiver_reads(mesh: Mesh) -> None:
    a, b = mesh.nodes
    accepted: asyncio.Queue[Tunnel] = asyncio.Queue()
    release = asyncio.Event()

    async def slow_reader(peer: str, method: str, body: dict, tunnel: Tunnel) -> None:
        await tunnel.accept()
        await accepted.put(tunnel)
        await release.wait()
        await tunnel.send(await _read_all(tunnel))  # never reached: the opener closes first

    b.tunnels = slow_reader
    tunnel = await mesh.link(a, b).open_tunnel("slow", {})
    served = await accepted.get()
    sending = asyncio.create_task(tunnel.send(bytes(4 * TUNNEL_WINDOW)))
    await asyncio.sleep(0.5)
    assert not sending.done()  # blocked: no credit left
    assert tunnel.bytes_sent == TUNNEL_WINDOW
    assert served._inbox_bytes == TUNNEL_WINDOW  # the receiver holds one window, no more
    got = 0
    while got < 4 * TUNNEL_WINDOW:  # reading grants credit: everything arrives
        chunk = await asyncio.wait_for(served.receive(), 5)
        assert 0 < len(chunk) <= TUNNEL_FRAME
        got += len(chunk)
        assert served._inbox_bytes <= TUNNEL_WINDOW
    await asyncio.wait_for(sending, 5)
    await tunnel.close()
    release.set()


async def test_a_refusal_reaches_the_opener(mesh: Mesh) -> None:
    a, b = mesh.nodes

    async def refuse(peer: str, method: str, body: dict, tunnel: Tunnel) -> None:
        raise ValueError(f"no instance {body['instance']}")

    b.tunnels = refuse
    with pytest.raises(TunnelRefused, match="no instance i-1"):
        await mesh.link(a, b).open_tunnel("ring", {"instance": "i-1"})
    assert mesh.link(a, b)._tunnels == {}


async def test_link_loss_fails_both_ends_of_every_tunnel(mesh: Mesh) -> None:
    a, b = mesh.nodes
    served: asyncio.Queue[Tunnel] = asyncio.Queue()
    failures: list[BaseException] = []

    async def hold(peer: str, method: str, body: dict, tunnel: Tunnel) -> None:
        await tunnel.accept()
        await served.put(tunnel)
        try:
            await tunnel.receive()
        except BaseException as exc:
            failures.append(exc)
            raise

    b.tunnels = hold
    opened = [await mesh.link(a, b).open_tunnel("hold", {}) for _ in range(3)]
    for _ in opened:
        await served.get()
    await mesh.link(b, a).close()
    for tunnel in opened:
        with pytest.raises(LinkLost):
            await asyncio.wait_for(tunnel.receive(), 5)
        with pytest.raises(LinkLost):
            await tunnel.send(b"x")
    for _ in range(100):
        if len(failures) == 3:
            break
        await asyncio.sleep(0.01)
    assert len(failures) == 3


async def test_a_peer_sending_beyond_the_window_fails_the_tunnel(mesh: Mesh) -> None:
    a, b = mesh.nodes
    served: asyncio.Queue[Tunnel] = asyncio.Queue()
    outcome: list[BaseException] = []

    async def never_read(peer: str, method: str, body: dict, tunnel: Tunnel) -> None:
        await tunnel.accept()
        await served.put(tunnel)
        await asyncio.sleep(1)
        try:
            await _read_all(tunnel)
        except TunnelClosed as exc:
            outcome.append(exc)

    b.tunnels = never_read
    link = mesh.link(a, b)
    tunnel = await link.open_tunnel("flood", {})
    await served.get()
    # Bypass the tunnel's credit accounting, as a broken or hostile peer would.
    for _ in range(TUNNEL_WINDOW // TUNNEL_FRAME + 1):
        await link.send(Kind.DATA, tunnel.id, bytes(TUNNEL_FRAME))
    assert await asyncio.wait_for(tunnel.receive(), 5) == b""  # the acceptor ended it
    for _ in range(200):
        if outcome:
            break
        await asyncio.sleep(0.01)
    assert "beyond its window" in str(outcome[0])


async def test_requests_and_pings_still_flow_while_a_tunnel_is_saturated(mesh: Mesh) -> None:
    a, b = mesh.nodes

    async def stalled(peer: str, method: str, body: dict, tunnel: Tunnel) -> None:
        await tunnel.accept()
        await asyncio.sleep(30)  # never reads

    async def answer(peer: str, method: str, body: dict) -> AsyncIterator[bytes]:
        yield b'{"ok": true}'

    b.tunnels, b.requests = stalled, answer
    link = mesh.link(a, b)
    tunnel = await link.open_tunnel("stall", {})
    sending = asyncio.create_task(tunnel.send(bytes(3 * TUNNEL_WINDOW)))
    await asyncio.sleep(0.2)
    assert await asyncio.wait_for(link.request("hello", {}), 2) == {"ok": True}
    assert not sending.done()
    await tunnel.close()
    with pytest.raises(TunnelClosed):
        await asyncio.wait_for(sending, 2)
