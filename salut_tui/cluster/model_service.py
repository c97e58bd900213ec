"""The sender's side of a model copy, served over the peer link to paired peers only (a link
exists only between paired nodes).

    model.manifest {model, files?}                -> one JSON payload: the manifest (with
                                                     `files`: only those weight files, and
                                                     every other file of the model)
    model.read     {model, name, offset, length}  -> DATA payloads of READ_BLOCK bytes
    model.bulk     {model, name, offset, length}  -> {"ticket", "port"}: the same range, read
                                                     once over the bulk path (bulk.py)

A read names a file by the name the manifest gave; it is served only if that name is one of the
model directory's own model files now (`model_file_names`), and only within the file's size: no
request can reach a path outside the model directory. Hashing and reading run on worker threads.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from salut_tui.cluster.bulk_tickets import TicketTable
from salut_tui.transfer.manifest import (
    HashCache,
    TransferError,
    build_manifest,
    check_name,
    check_names,
    model_file_names,
)

MODEL_MANIFEST = "model.manifest"
MODEL_READ = "model.read"
READ_BLOCK = 1024 * 1024  # one DATA payload (the link cuts it into <=16 KiB frames)


class ModelFiles:
    """Serves this node's model files to peers. `locate` maps a model id to its directory."""

    def __init__(self, locate: Callable[[str], Path | None], port: Callable[[], int]) -> None:
        self._locate = locate
        self._port = port  # where this node's bulk path listens (its API port)
        self._hashes = HashCache()
        self.tickets = TicketTable()
        self.bytes_served = 0  # over this process's life, both paths (tests, the bench)
        self.bulk_bytes_served = 0  # of which on the bulk path

    def served(self, count: int) -> None:
        self.bytes_served += count
        self.bulk_bytes_served += count

    def _directory(self, model_id: object) -> Path:
        if not isinstance(model_id, str) or not model_id:
            raise TransferError("give the model id")
        directory = self._locate(model_id)
        if directory is None:
            raise TransferError(f"the model '{model_id}' is not on this node")
        return directory

    async def manifest(self, body: dict) -> AsyncIterator[bytes]:
        model_id = body.get("model")
        directory = self._directory(model_id)
        weights = check_names(body.get("files"))
        manifest = await asyncio.to_thread(
            build_manifest, str(model_id), directory, self._hashes, weights
        )
        yield json.dumps(manifest.to_json()).encode()

    async def _range(self, body: dict) -> tuple[Path, str, int, int]:
        """The file and byte range a read asks for, refused unless it is a model file of that
        model and the range lies within it."""
        directory = self._directory(body.get("model"))
        name = check_name(body.get("name"))
        if name not in await asyncio.to_thread(model_file_names, directory):
            raise TransferError(f"'{name}' is not a file of this model")
        offset, length = body.get("offset"), body.get("length")
        if any(not isinstance(n, int) or isinstance(n, bool) or n < 0 for n in (offset, length)):
            raise TransferError("offset and length must be whole numbers")
        assert isinstance(offset, int) and isinstance(length, int)
        size = (await asyncio.to_thread((directory / name).stat)).st_size
        if offset + length > size:
            raise TransferError(f"'{name}' has {size} bytes, fewer than asked for")
        return directory / name, name, offset, length

    async def bulk_ticket(
        self, peer_id: str, link_secret: bytes, body: dict
    ) -> AsyncIterator[bytes]:
        """A one-time ticket for reading this range over the bulk path (bulk.py)."""
        path, name, offset, length = await self._range(body)
        ticket = self.tickets.issue(
            peer_id=peer_id, link_secret=link_secret, path=path, name=name, offset=offset,
            length=length, now=time.monotonic(),
        )  # fmt: skip
        yield json.dumps({"ticket": ticket.ticket.hex(), "port": self._port()}).encode()

    async def read(self, body: dict) -> AsyncIterator[bytes]:
        path, name, offset, length = await self._range(body)
        fh = await asyncio.to_thread(path.open, "rb")
        try:
            await asyncio.to_thread(fh.seek, offset)
            left = length
            while left > 0:
                block = await asyncio.to_thread(fh.read, min(READ_BLOCK, left))
                if not block:
                    raise TransferError(f"'{name}' got shorter while it was being read")
                left -= len(block)
                self.bytes_served += len(block)
                yield block
        finally:
            fh.close()
