"""The bulk path of a model copy between two real nodes in one process: the endpoint refuses
forged, reused and unproven tickets before serving a byte; a stream tampered with on the way
fails the copy with a clear error and nothing visible, and the next pull goes on from the
pieces that were good; the link path still works for a peer without the bulk path. (Resume after
a cancelled pull: test_model_pull.py, which runs the bulk path too; the sender killed mid-copy
between processes: test_multinode_pull.py.)"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from salut_tui.cluster.bulk import BULK_PATH, MODEL_BULK, PROOF_HEADER, TICKET_HEADER
from salut_tui.cluster.bulk_crypto import (
    TAG_BYTES,
    RangeSealer,
    request_proof,
    sealed_length,
    ticket_keys,
)
from salut_tui.cluster.pull import pull_model
from salut_tui.node import Node
from salut_tui.transfer.manifest import TransferError
from tests.test_model_pull import MODEL, digests, link_to_b, nodes  # noqa: F401

PIECE = 64 * 1024
NAME = "extra.safetensors"


async def bulk_get(b: Node, headers: dict[str, str]) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{b.port}{BULK_PATH}", headers=headers) as response,
    ):
        return response.status, await response.read()


async def test_the_endpoint_serves_a_ticket_once_and_only_with_its_proof(
    nodes: tuple[Node, Node],  # noqa: F811
) -> None:
    a, b = nodes
    link = link_to_b(a, b)
    source = (b.settings.models_path() / MODEL / NAME).read_bytes()
    wanted = {"model": MODEL, "name": NAME, "offset": 1000, "length": 9000}

    async def ticket() -> bytes:
        return bytes.fromhex((await link.request(MODEL_BULK, wanted))["ticket"])

    def headers(raw: bytes, proof: bytes | None = None) -> dict[str, str]:
        keys = ticket_keys(link.exporter(), raw)
        return {TICKET_HEADER: raw.hex(), PROOF_HEADER: (proof or request_proof(keys, raw)).hex()}

    assert (await bulk_get(b, {}))[0] == 403
    assert (await bulk_get(b, headers(b"f" * 16)))[0] == 403  # forged: never issued
    unproven = await ticket()
    status, body = await bulk_get(b, headers(unproven, proof=b"\0" * 32))
    assert status == 403 and b"proof" in body
    assert (await bulk_get(b, headers(unproven)))[0] == 403  # spent by the failed try
    good = await ticket()
    status, body = await bulk_get(b, headers(good))
    assert status == 200 and len(body) == sealed_length(9000)
    opener = RangeSealer(ticket_keys(link.exporter(), good), good, NAME, 1000, 9000)
    (span,) = opener.spans
    assert opener.open(0, body[: span[1] + TAG_BYTES]) == source[1000:10000]
    assert (await bulk_get(b, headers(good)))[0] == 403  # reused
    assert b.cluster is not None and b.cluster.model_files.bulk_bytes_served == 9000


@contextlib.asynccontextmanager
async def tampering_proxy(target_port: int, response: int, at: int) -> AsyncIterator[int]:
    """A TCP relay to `target_port` (an attacker on the path) that flips one byte `at` bytes
    into the body of the `response`-th HTTP response it relays."""
    count = 0

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def downstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(
                    int(line.split(b":")[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                )
                body = bytearray(await reader.readexactly(length))
                count += 1
                if count == response and at < length:
                    body[at] ^= 0x40
                writer.write(head + body)
                await writer.drain()
        writer.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(upstream(reader, up_writer), downstream(up_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_a_tampered_stream_fails_the_copy_and_the_next_pull_goes_on(
    nodes: tuple[Node, Node],  # noqa: F811
) -> None:
    a, b = nodes
    assert b.cluster is not None
    link = link_to_b(a, b)
    root = a.settings.models_path()
    files = b.cluster.model_files
    # The 6th piece gets one byte flipped on the way.
    async with tampering_proxy(b.port, response=6, at=2000) as port:
        files._port = lambda: port  # peers are told to fetch through the attacker
        with pytest.raises(TransferError, match="failed authentication"):
            await pull_model(link, MODEL, root, in_flight=1, piece_size=PIECE)
    files._port = lambda: b.port
    assert not (root / MODEL).exists()  # nothing made visible
    sent_before = files.bulk_bytes_served
    path = await pull_model(link, MODEL, root, piece_size=PIECE)
    assert digests(path) == digests(b.settings.models_path() / MODEL)
    total = sum(p.stat().st_size for p in path.iterdir())
    resent = files.bulk_bytes_served - sent_before
    assert 0 < resent < total  # the good pieces were kept


async def test_the_link_path_still_copies(nodes: tuple[Node, Node]) -> None:  # noqa: F811
    a, b = nodes
    assert b.cluster is not None
    path = await pull_model(link_to_b(a, b), MODEL, a.settings.models_path(), bulk=False)
    assert digests(path) == digests(b.settings.models_path() / MODEL)
    assert b.cluster.model_files.bulk_bytes_served == 0 < b.cluster.model_files.bytes_served


async def test_the_copy_goes_over_the_bulk_path(nodes: tuple[Node, Node]) -> None:  # noqa: F811
    a, b = nodes
    assert b.cluster is not None
    (b.settings.models_path() / MODEL / "empty.txt").write_bytes(b"")  # a range of no records
    path = await pull_model(link_to_b(a, b), MODEL, a.settings.models_path(), piece_size=PIECE)
    assert (path / "empty.txt").read_bytes() == b""
    assert digests(path) == digests(b.settings.models_path() / MODEL)
    files = b.cluster.model_files
    assert (
        files.bulk_bytes_served
        == files.bytes_served
        == sum(p.stat().st_size for p in Path(path).iterdir())
    )
    assert len(files.tickets) == 0  # every ticket issued was spent
