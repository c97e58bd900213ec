"""A persistent, authenticated, encrypted websocket to one paired peer, multiplexing streams.

Either end may open streams (the dialer uses odd ids, the acceptor even ones, as HTTP/2 does).
A stream is a method name and a JSON body, answered by any number of DATA payloads and an END
or an ERROR; closing it early sends CANCEL, which cancels the handler on the other side. A
tunnel (`open_tunnel`, see tunnel.py) is a stream that carries bytes both ways with flow
control, served by the `tunnel_handler` given at construction. Stream
0 carries PING/PONG (round-trip time, liveness) and the ~1/s STATE broadcast. A link that has
received nothing for `DEAD_AFTER` seconds closes itself, which fails its open streams at once.
A link replaced by a newer one to the same peer (two links crossed, or the peer re-linked)
`drain`s: it opens nothing new, finishes the streams and tunnels it carries, then closes.

A link starts from a websocket on which `link_handshake` (dial or accept) proved both ends. Its
messages stay as small as the strangers' limit: large frames are split into pieces
(`frames.split`), so the limit never grows.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from salut_tui.cluster.frames import (
    FrameCipher,
    Kind,
    Reassembler,
    decode,
    encode,
    split,
)
from salut_tui.cluster.tunnel import Tunnel, TunnelRefused
from salut_tui.pairing.keys import CryptoFailure
from salut_tui.pairing.trust import TrustedPeer

log = logging.getLogger(__name__)

TICK = 1.0  # seconds between PING + STATE
DEAD_AFTER = 3.0  # silence after which the peer counts as gone
DRAIN_GRACE = 1.0  # a replaced link lives at least this long: the peer's last opens may be on
# their way (each end switches to the new link on its own, a moment apart)

Handler = Callable[[str, dict], AsyncIterator[bytes]]
# Serves a tunnel the peer opened: `await tunnel.accept()` first, then move bytes; returning
# closes it, raising before `accept` refuses it (the opener gets a TunnelRefused).
TunnelHandler = Callable[[str, dict, Tunnel], Awaitable[None]]
_END = object()


class LinkLost(Exception):
    """The link closed while a stream was open."""


class RemoteError(Exception):
    def __init__(self, body: dict) -> None:
        super().__init__(body.get("message", "peer error"))
        self.body = body


class Stream:
    """The opener's end of a stream: iterate payloads; `aclose` cancels it on the peer."""

    def __init__(self, link: PeerLink, stream_id: int) -> None:
        self.link = link
        self.id = stream_id
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.done = False

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> bytes:
        if self.done:
            raise StopAsyncIteration
        item = await self.queue.get()
        if isinstance(item, bytes):
            return item
        self.done = True
        self.link._forget_stream(self.id)
        if item is _END:
            raise StopAsyncIteration
        raise item

    async def aclose(self) -> None:
        if not self.done:
            self.done = True
            self.link._forget_stream(self.id)
            with contextlib.suppress(LinkLost, ConnectionError, RuntimeError):
                await self.link.send(Kind.CANCEL, self.id)


class PeerLink:
    def __init__(
        self,
        ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        cipher: FrameCipher,
        *,
        peer: TrustedPeer,
        initiator: bool,
        handler: Handler,
        state: Callable[[], dict],
        on_state: Callable[[PeerLink, dict], None],
        on_notice: Callable[[PeerLink, dict], None],
        tunnel_handler: TunnelHandler | None = None,
    ) -> None:
        self.ws = ws
        self.peer = peer
        self.initiator = initiator
        self.rtt: float | None = None
        self.last_received = time.monotonic()
        self._cipher = cipher
        self._handler = handler
        self._state = state
        self._on_state = on_state
        self._on_notice = on_notice
        self._ids = itertools.count(1 if initiator else 2, 2)
        self._streams: dict[int, Stream] = {}
        self._serving: dict[int, asyncio.Task] = {}
        self._tunnel_handler = tunnel_handler
        self._tunnels: dict[int, Tunnel] = {}  # both the ones we opened and the ones we serve
        self._send_lock = asyncio.Lock()
        self._parts = Reassembler()
        self.closed = False
        self.draining = False  # replaced: finishing its streams, opening none (see drain)
        self._quieter = asyncio.Event()  # set when a stream, tunnel or served task ends
        self._drainer: asyncio.Task | None = None

    # ---- sending -------------------------------------------------------------------------
    async def send(self, kind: Kind, stream_id: int, payload: bytes = b"") -> None:
        # The lock keeps seal order (the nonce counter) equal to wire order.
        async with self._send_lock:
            if self.closed or self.ws.closed:
                raise LinkLost(f"link to {self.peer.name} is closed")
            # The pieces of a large frame go out back to back, under the same lock.
            for frame in split(encode(kind, stream_id, payload)):
                await self.ws.send_bytes(self._cipher.seal(frame))

    def _refuse_if_draining(self) -> None:
        if self.draining:  # the caller asks its peer record again and gets the new link
            raise LinkLost(f"link to {self.peer.name} was replaced")

    def exporter(self) -> bytes:
        """A secret only the two ends of this link session know (FrameCipher.exporter)."""
        return self._cipher.exporter()

    def remote_host(self) -> str | None:
        """The peer's IP address as this link's connection sees it."""
        peername = self.ws.get_extra_info("peername")
        return str(peername[0]) if peername else None

    async def open(self, method: str, body: dict) -> Stream:
        self._refuse_if_draining()
        stream = Stream(self, next(self._ids))
        self._streams[stream.id] = stream
        await self.send(Kind.OPEN, stream.id, json.dumps({"method": method, "body": body}).encode())
        return stream

    async def request(self, method: str, body: dict) -> Any:
        """A unary call: open a stream and return its single JSON payload."""
        stream = await self.open(method, body)
        try:
            async for payload in stream:
                return json.loads(payload)
        finally:
            await stream.aclose()
        raise RemoteError({"message": f"{method}: empty answer"})

    async def open_tunnel(self, method: str, body: dict, timeout: float = 10.0) -> Tunnel:
        """A byte tunnel to the peer's tunnel handler; raises TunnelRefused when it says no."""
        self._refuse_if_draining()
        tunnel = Tunnel(self.send, next(self._ids), on_close=self._forget_tunnel)
        self._tunnels[tunnel.id] = tunnel
        opening = {"method": method, "body": body, "window": tunnel.window}
        try:
            await self.send(Kind.TUNNEL, tunnel.id, json.dumps(opening).encode())
            await asyncio.wait_for(tunnel.wait_accepted(), timeout)
        except BaseException:
            await tunnel.close()
            raise
        return tunnel

    def _forget_tunnel(self, stream_id: int) -> None:
        self._tunnels.pop(stream_id, None)
        self._quieter.set()

    def _forget_stream(self, stream_id: int) -> None:
        self._streams.pop(stream_id, None)
        self._quieter.set()

    # ---- replacement ---------------------------------------------------------------------
    def drain(self) -> None:
        """A newer link to the same peer replaces this one: open nothing new here, let the
        streams and tunnels it carries (both ways) finish, then close. What the peer opens here
        is still served: it may not have switched yet, and it opens nothing once it has."""
        if self.draining or self.closed:
            return
        self.draining = True
        self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        await asyncio.sleep(DRAIN_GRACE)
        while not self.closed and (self._streams or self._serving or self._tunnels):
            self._quieter.clear()
            await self._quieter.wait()
        log.debug("replaced link to %s drained", self.peer.name)
        await self.close()

    async def notice(self, body: dict) -> None:
        await self.send(Kind.NOTICE, 0, json.dumps(body).encode())

    # ---- receiving -----------------------------------------------------------------------
    async def run(self) -> None:
        """Read frames until the link ends; then fail open streams and stop served ones."""
        ticker = asyncio.get_running_loop().create_task(self._tick())
        try:
            async for msg in self.ws:
                if msg.type is not aiohttp.WSMsgType.BINARY:
                    break
                self.last_received = time.monotonic()
                kind, stream_id, payload = decode(self._cipher.open(msg.data))
                if kind in (Kind.PART, Kind.PART_END):
                    whole = self._parts.feed(kind, payload)
                    if whole is None:
                        continue
                    kind, stream_id, payload = decode(whole)
                await self._dispatch(kind, stream_id, payload)
        except (CryptoFailure, ValueError, KeyError) as exc:  # forged, or a malformed frame
            log.warning("link to %s: %s", self.peer.name, exc)
        finally:
            ticker.cancel()
            await self.close()

    async def _dispatch(self, kind: Kind, stream_id: int, payload: bytes) -> None:
        tunnel = self._tunnels.get(stream_id) if stream_id else None
        if tunnel is not None and kind in (Kind.DATA, Kind.END, Kind.ERROR, Kind.CREDIT):
            tunnel.on_frame(kind, payload)
        elif kind is Kind.TUNNEL:
            self._accept_tunnel(stream_id, json.loads(payload))
        elif kind is Kind.OPEN:
            request = json.loads(payload)
            served = asyncio.get_running_loop().create_task(
                self._serve(stream_id, request["method"], request["body"])
            )
            self._serving[stream_id] = served
            served.add_done_callback(functools.partial(self._served, stream_id))
        elif kind in (Kind.DATA, Kind.END, Kind.ERROR):
            stream = self._streams.get(stream_id)
            if stream is not None:
                item = (
                    payload
                    if kind is Kind.DATA
                    else _END
                    if kind is Kind.END
                    else RemoteError(json.loads(payload))
                )
                stream.queue.put_nowait(item)
        elif kind is Kind.CANCEL:
            task = self._serving.pop(stream_id, None)
            if task is not None:
                task.cancel()
        elif kind is Kind.PING:
            await self.send(Kind.PONG, 0, payload)
        elif kind is Kind.PONG:
            (sent,) = struct.unpack(">d", payload)
            self.rtt = time.perf_counter() - sent
        elif kind is Kind.STATE:
            self._on_state(self, json.loads(payload))
        elif kind is Kind.NOTICE:
            self._on_notice(self, json.loads(payload))

    def _accept_tunnel(self, stream_id: int, opening: dict) -> None:
        tunnel = Tunnel(
            self.send, stream_id, credit=int(opening["window"]), on_close=self._forget_tunnel
        )
        self._tunnels[stream_id] = tunnel
        served = asyncio.get_running_loop().create_task(
            self._serve_tunnel(tunnel, opening["method"], opening["body"])
        )
        self._serving[stream_id] = served
        served.add_done_callback(functools.partial(self._served, stream_id))

    async def _serve_tunnel(self, tunnel: Tunnel, method: str, body: dict) -> None:
        try:
            if self._tunnel_handler is None:
                raise ValueError("this node serves no tunnels")
            await self._tunnel_handler(method, body, tunnel)
        except (LinkLost, ConnectionError):
            pass
        except Exception as exc:
            if not tunnel.closed:
                log.info("peer tunnel %s refused or failed: %s", method, exc)
                error = {"message": str(exc), "type": "server_error", "code": "tunnel_refused"}
                with contextlib.suppress(LinkLost, ConnectionError):
                    await self.send(Kind.ERROR, tunnel.id, json.dumps(error).encode())
                tunnel.fail(TunnelRefused(error))
        finally:
            await tunnel.close()

    def _served(self, stream_id: int, task: asyncio.Task) -> None:
        self._serving.pop(stream_id, None)
        self._quieter.set()

    async def _serve(self, stream_id: int, method: str, body: dict) -> None:
        try:
            async for payload in self._handler(method, body):
                await self.send(Kind.DATA, stream_id, payload)
            await self.send(Kind.END, stream_id)
        except (LinkLost, ConnectionError):
            pass
        except Exception as exc:  # the peer gets the failure as an ERROR frame, not a hang
            log.exception("peer request %s failed", method)
            error = {
                "message": str(exc),
                "type": "server_error",
                "code": "peer_error",
                "status": 500,
            }
            with contextlib.suppress(LinkLost, ConnectionError):
                await self.send(Kind.ERROR, stream_id, json.dumps(error).encode())

    async def _tick(self) -> None:
        with contextlib.suppress(LinkLost, ConnectionError, RuntimeError):
            while not self.closed:
                try:
                    # A send can block on a full socket buffer when the network is cut without
                    # a reset; the silence check below must still run, so sends are bounded.
                    await asyncio.wait_for(self._send_tick(), DEAD_AFTER)
                except TimeoutError:
                    log.warning(
                        "peer %s: link stalled for %.0f s: closing it", self.peer.name, DEAD_AFTER
                    )
                    await self.close()
                    return
                await asyncio.sleep(TICK)
                if time.monotonic() - self.last_received > DEAD_AFTER:
                    log.warning(
                        "peer %s silent for %.0f s: closing its link", self.peer.name, DEAD_AFTER
                    )
                    await self.close()

    async def _send_tick(self) -> None:
        await self.send(Kind.PING, 0, struct.pack(">d", time.perf_counter()))
        await self.send(Kind.STATE, 0, json.dumps(self._state()).encode())

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for stream in list(self._streams.values()):
            stream.queue.put_nowait(LinkLost(f"peer {self.peer.name} went away"))
        self._streams.clear()
        for tunnel in list(self._tunnels.values()):
            tunnel.fail(LinkLost(f"peer {self.peer.name} went away"))
        self._tunnels.clear()
        for task in list(self._serving.values()):
            task.cancel()
        if self._drainer is not None and self._drainer is not asyncio.current_task():
            self._drainer.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 1.0)
