"""A bidirectional byte tunnel carried as one stream of a peer link (both ends alike).

Either end sends DATA (at most `TUNNEL_FRAME` bytes each, one wire message); END from either end closes the whole
tunnel (bytes already received are still delivered). Flow control is by credit, as in HTTP/2:
each end grants the other a receive window, a sender never has more un-granted bytes in flight,
and the receiver grants more (a CREDIT frame) as its consumer takes data. So a fast sender waits
instead of growing the other end's memory, and one slow tunnel never blocks the link's reader
(frames are only ever queued, never awaited, on arrival). A peer that sends beyond the window
breaks the protocol: the tunnel fails.

Opening: the opener sends TUNNEL {"method", "body", "window"}; the acceptor's first CREDIT (its
window) means accepted, an ERROR means refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections import deque
from collections.abc import Awaitable, Callable

from salut_tui.cluster.frames import PIECE, Kind

# The largest DATA payload: a tunnel frame, header included, fits one wire message, so it is
# never split into PART pieces (which would hold the link's send lock for several messages).
TUNNEL_FRAME = PIECE - 16
TUNNEL_WINDOW = 1024 * 1024  # bytes a sender may have in flight before the receiver grants more
_CREDIT = struct.Struct(">I")

SendFrame = Callable[[Kind, int, bytes], Awaitable[None]]


class TunnelClosed(Exception):
    """The tunnel is closed (by either end) and can carry no more bytes."""


class TunnelRefused(Exception):
    """The other end refused to open the tunnel (its ERROR body is in `body`)."""

    def __init__(self, body: dict) -> None:
        super().__init__(body.get("message", "tunnel refused"))
        self.body = body


class Tunnel:
    def __init__(
        self,
        send_frame: SendFrame,
        stream_id: int,
        *,
        credit: int = 0,
        window: int = TUNNEL_WINDOW,
        on_close: Callable[[int], None] = lambda _id: None,
    ) -> None:
        self.id = stream_id
        self.window = window  # what this end lets the other have in flight
        self._send_frame = send_frame
        self._on_close = on_close
        self._credit = credit  # bytes this end may still send
        self._inbox: deque[bytes] = deque()
        self._inbox_bytes = 0
        self._consumed = 0  # bytes taken by our consumer and not yet granted back
        self._wakeup = asyncio.Event()  # anything changed: credit, data, close
        self._accepted = asyncio.Event()
        self._eof = False  # the other end sent END
        self._failure: BaseException | None = None
        self.closed = False
        self.bytes_sent = 0
        self.bytes_received = 0
        self._ending: asyncio.Task | None = None

    # ---- what the link's reader calls (never blocks) ----------------------------------------
    def on_frame(self, kind: Kind, payload: bytes) -> None:
        if kind is Kind.CREDIT:
            (granted,) = _CREDIT.unpack(payload)
            self._credit += granted
            self._accepted.set()
        elif kind is Kind.DATA:
            if len(payload) > TUNNEL_FRAME or self._inbox_bytes + len(payload) > self.window:
                self.fail(TunnelClosed("the other end sent beyond its window"))
                ending = asyncio.get_running_loop().create_task(self._send_end())
                self._ending = ending  # the loop keeps only a weak reference to a task
                return
            self._inbox.append(payload)
            self._inbox_bytes += len(payload)
            self.bytes_received += len(payload)
        elif kind is Kind.END:
            self._eof = True
            self._mark_closed()
        elif kind is Kind.ERROR:
            self.fail(TunnelRefused(json.loads(payload)))
        self._wakeup.set()

    def fail(self, exc: BaseException) -> None:
        """The tunnel cannot go on (link lost, protocol broken): wake everyone with `exc`."""
        if self._failure is None:
            self._failure = exc
        self._mark_closed()
        self._wakeup.set()

    # ---- both ends -----------------------------------------------------------------------
    async def wait_accepted(self) -> None:
        """The opener's wait for the acceptor's first CREDIT (or its refusal)."""
        while not self._accepted.is_set():
            if self._failure is not None:
                raise self._failure
            if self.closed:
                raise TunnelClosed("closed before it was accepted")
            await self._wait()

    async def accept(self) -> None:
        """The acceptor's yes: grant the opener our window."""
        await self._send_frame(Kind.CREDIT, self.id, _CREDIT.pack(self.window))
        self._accepted.set()

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.closed:
                raise self._failure or TunnelClosed("tunnel closed")
            if self._credit <= 0:
                await self._wait()
                continue
            n = min(len(view), TUNNEL_FRAME, self._credit)
            self._credit -= n
            await self._send_frame(Kind.DATA, self.id, bytes(view[:n]))
            self.bytes_sent += n
            view = view[n:]

    async def receive(self) -> bytes:
        """The next bytes; b"" once the other end closed. Raises when the tunnel failed."""
        while not self._inbox:
            if self._failure is not None:
                raise self._failure
            if self.closed:
                return b""
            await self._wait()
        chunk = self._inbox.popleft()
        self._inbox_bytes -= len(chunk)
        self._consumed += len(chunk)
        # Grant in batches (a quarter window) so that credit frames stay rare.
        if self._consumed >= self.window // 4 and not self.closed:
            granted, self._consumed = self._consumed, 0
            await self._send_frame(Kind.CREDIT, self.id, _CREDIT.pack(granted))
        return chunk

    async def close(self) -> None:
        if self.closed:
            return
        self._mark_closed()
        self._wakeup.set()
        await self._send_end()

    # ---- internals -----------------------------------------------------------------------
    async def _send_end(self) -> None:
        # When the link is gone the other end learns it from the link itself.
        with contextlib.suppress(Exception):
            await self._send_frame(Kind.END, self.id, b"")

    def _mark_closed(self) -> None:
        if not self.closed:
            self.closed = True
            self._on_close(self.id)

    async def _wait(self) -> None:
        self._wakeup.clear()
        await self._wakeup.wait()
