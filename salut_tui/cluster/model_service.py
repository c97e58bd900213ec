"""The sender's side of a model copy, served over the peer link to paired peers only (a link
exists only between paired nodes).

    model.manifest {model, files?}                -> one JSON payload: the manifest (with
                                                     `files`: only those weight files, and
                                                     every other file of the model)
    model.read     {model, name, offset, length}  -> DATA payloads of READ_BLOCK bytes

A read names a file by the name the manifest gave; it is served only if that name is one of the
model directory's own model files now (`model_file_names`), and only within the file's size: no
request can reach a path outside the model directory. Hashing and reading run on worker threads.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

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

    def __init__(self, locate: Callable[[str], Path | None]) -> None:
        self._locate = locate
        self._hashes = HashCache()
        self.bytes_served = 0  # over this process's life (tests, the bench)

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

    async def read(self, body: dict) -> AsyncIterator[bytes]:
        directory = self._directory(body.get("model"))
        name = check_name(body.get("name"))
        if name not in await asyncio.to_thread(model_file_names, directory):
            raise TransferError(f"'{name}' is not a file of this model")
        offset, length = body.get("offset"), body.get("length")
        if not isinstance(offset, int) or not isinstance(length, int) or offset < 0 or length < 0:
            raise TransferError("offset and length must be whole numbers")
        fh = await asyncio.to_thread((directory / name).open, "rb")
        try:
            size = await asyncio.to_thread(lambda: fh.seek(0, 2))
            if offset + length > size:
                raise TransferError(f"'{name}' has {size} bytes, fewer than asked for")
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
