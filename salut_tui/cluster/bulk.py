"""The bulk path of a model copy: a piece's bytes on a plain HTTP connection to the sender, in
large AES-GCM records, instead of 16 KiB frames of the peer link (keys, tickets and record
format: bulk_crypto.py and bulk_tickets.py).

    puller --link-->  model.bulk {model, name, offset, length}  -> {"ticket", "port"}
    puller --HTTP-->  GET /salut/bulk  (X-Salut-Ticket, X-Salut-Proof)
                      200, Content-Length known in advance, body = the sealed records

The sender checks the ticket and its proof before it opens a file or sends a header; anything
else is a 403 of a few bytes, so the endpoint costs a stranger nothing more than a dict lookup.
Reading and sealing (sender), opening and writing (puller) run on worker threads, one record
ahead on the sender, so the event loop only moves buffers and both cores work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from salut_tui.cluster.bulk_crypto import (
    TAG_BYTES,
    TICKET_BYTES,
    RangeSealer,
    request_proof,
    sealed_length,
    ticket_keys,
)
from salut_tui.cluster.bulk_tickets import TicketRefused, TicketTable
from salut_tui.cluster.link import PeerLink, RemoteError
from salut_tui.transfer.manifest import TransferError
from salut_tui.transfer.plan import Piece

log = logging.getLogger(__name__)

BULK_PATH = "/salut/bulk"
TICKET_HEADER = "X-Salut-Ticket"
PROOF_HEADER = "X-Salut-Proof"
MODEL_BULK = "model.bulk"  # the link method that issues a ticket (model_service.py)
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0  # silence on a bulk connection after which the piece fails


class Threads:
    """Blocking calls on worker threads that outlive a cancelled caller: `drain` waits for those
    still running, so a file descriptor is closed only once no thread can touch it (a number
    closed too early may be reused by another file)."""

    def __init__(self) -> None:
        self._running: set[asyncio.Future] = set()

    def start(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future:
        future = asyncio.get_running_loop().run_in_executor(None, fn, *args)
        self._running.add(future)
        future.add_done_callback(self._running.discard)
        return future

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.shield(self.start(fn, *args))

    async def drain(self) -> None:
        while self._running:
            done, _ = await asyncio.wait(set(self._running))
            for future in done:  # retrieved, so asyncio does not log them as lost
                if not future.cancelled():
                    future.exception()


# ---- the sender ------------------------------------------------------------------------------
def _read_and_seal(fd: int, sealer: RangeSealer, offset: int, index: int) -> bytes:
    at, size = sealer.spans[index]
    plaintext = os.pread(fd, size, offset + at)
    if len(plaintext) != size:
        raise TransferError("the file got shorter while it was being read")
    return sealer.seal(index, plaintext)


async def serve_bulk(
    request: web.Request, tickets: TicketTable, on_bytes: Callable[[int], None]
) -> web.StreamResponse:
    try:
        ticket = tickets.redeem(
            request.headers.get(TICKET_HEADER, ""),
            request.headers.get(PROOF_HEADER, ""),
            time.monotonic(),
        )
    except TicketRefused as exc:
        log.info("refused a bulk read from %s: %s", request.remote, exc)
        return web.json_response({"error": str(exc)}, status=403)
    sealer = RangeSealer(ticket.keys, ticket.ticket, ticket.name, ticket.offset, ticket.length)
    threads = Threads()
    fd = await threads.run(os.open, ticket.path, os.O_RDONLY)
    try:
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(sealed_length(ticket.length)),
            }
        )
        await response.prepare(request)
        count = len(sealer.spans)
        ahead = threads.start(_read_and_seal, fd, sealer, ticket.offset, 0) if count else None
        for index in range(count):
            assert ahead is not None
            sealed = await asyncio.shield(ahead)
            if index + 1 < count:  # read and seal the next record while this one is sent
                ahead = threads.start(_read_and_seal, fd, sealer, ticket.offset, index + 1)
            await response.write(sealed)
            on_bytes(len(sealed) - TAG_BYTES)
        await response.write_eof()
        return response
    finally:
        await threads.drain()
        os.close(fd)


# ---- the puller ------------------------------------------------------------------------------
class OldPeer(Exception):
    """The peer serves no bulk path (an older version): copy over the link instead."""


def _open_and_write(sealer: RangeSealer, index: int, sealed: bytes, fd: int, at: int) -> bytes:
    plaintext = sealer.open(index, sealed)
    os.pwrite(fd, plaintext, at)
    return plaintext


def bulk_session() -> aiohttp.ClientSession:
    # No decompression: the body is sealed records, and a compressed one could be a bomb.
    timeout = aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT)
    return aiohttp.ClientSession(auto_decompress=False, timeout=timeout)


class BulkReader:
    """Fetches pieces of one model from the peer at the other end of `link`."""

    def __init__(
        self, link: PeerLink, model_id: str, session: aiohttp.ClientSession, threads: Threads
    ) -> None:
        self.link, self.model_id, self.session, self.threads = link, model_id, session, threads

    async def _ticket(self, link: PeerLink, piece: Piece) -> tuple[bytes, str]:
        body = {
            "model": self.model_id, "name": piece.name, "offset": piece.offset,
            "length": piece.length,
        }  # fmt: skip
        answer = await link.request(MODEL_BULK, body)
        ticket, port, host = answer.get("ticket"), answer.get("port"), link.remote_host()
        if not isinstance(ticket, str) or len(ticket) != 2 * TICKET_BYTES:
            raise TransferError(f"{link.peer.name} sent a malformed bulk ticket")
        if not isinstance(port, int) or not 0 < port < 65536 or host is None:
            raise TransferError(f"{link.peer.name} gave no address for the copy")
        host = f"[{host}]" if ":" in host else host
        return bytes.fromhex(ticket), f"http://{host}:{port}{BULK_PATH}"

    async def fetch(self, piece: Piece, fd: int, on_bytes: Callable[[int], None]) -> list[bytes]:
        """Write `piece` at its offset in `fd`; its plaintext blocks, in order, for hashing."""
        link = self.link  # one link for the ticket and its keys, even if `link` is replaced
        try:
            ticket, url = await self._ticket(link, piece)
        except RemoteError as exc:
            if "unknown peer method" in str(exc):  # what a 0.1 peer answers
                raise OldPeer() from None
            raise
        keys = ticket_keys(link.exporter(), ticket)
        sealer = RangeSealer(keys, ticket, piece.name, piece.offset, piece.length)
        headers = {TICKET_HEADER: ticket.hex(), PROOF_HEADER: request_proof(keys, ticket).hex()}
        blocks = []
        async with self.session.get(url, headers=headers) as response:
            if response.status != 200:
                reason = ""
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    reason = (await response.content.read(500)).decode(errors="replace")
                raise TransferError(
                    f"{link.peer.name} refused the copy ({response.status}): {reason}"
                )
            if response.content_length != sealed_length(piece.length):
                raise TransferError(f"{link.peer.name} announced the wrong length")
            for index, (at, size) in enumerate(sealer.spans):
                sealed = await response.content.readexactly(size + TAG_BYTES)
                blocks.append(
                    await self.threads.run(
                        _open_and_write, sealer, index, sealed, fd, piece.offset + at
                    )
                )
                on_bytes(size)
        return blocks
