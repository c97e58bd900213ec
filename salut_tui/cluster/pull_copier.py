"""The pieces of a model copy (see `pull.py`): fetched several at once on the bulk path or over
the link, each written at its offset into `<file>.part` and logged for resume, then every file
verified against the sender's SHA-256. A copy moves to the peer's new link when its link is
replaced mid-copy, and a piece fetched again does not count twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from salut_tui.cluster.bulk import BulkReader, OldPeer, Threads, bulk_session
from salut_tui.cluster.link import LinkLost, PeerLink, RemoteError
from salut_tui.cluster.model_service import MODEL_READ
from salut_tui.pairing.keys import CryptoFailure
from salut_tui.transfer.manifest import Manifest, TransferError, check_name, sha256_file
from salut_tui.transfer.plan import Piece, bytes_of, log_line

log = logging.getLogger("salut_tui.cluster.pull")  # one logger for the whole pull

LOG_FILE = ".salut-pieces.log"


@dataclass(frozen=True, slots=True)
class PullProgress:
    done: int  # bytes of the model on disk here (earlier attempts included)
    total: int
    received: int  # bytes received in this attempt
    stage: str  # "manifest", "copying", "verifying", "done"


Report = Callable[[PullProgress], None]


LinkSource = Callable[[], PeerLink]
# How often one copy moves to the peer's new link when its link is replaced (crossed links, a
# re-link after a stall) before it gives up; a replaced link drains, so only new requests fail.
RELINKS = 3


def relinked(links: LinkSource, old: PeerLink) -> PeerLink | None:
    """The peer's current link when it is not `old` (which was replaced), else None."""
    try:
        fresh = links()
    except TransferError:
        return None
    return None if fresh is old else fresh


class InOrderHash:
    """SHA-256 of a file whose pieces complete out of order: each piece is hashed (on a worker
    thread, which hashlib runs without the GIL) as soon as every byte before it has been, so
    the check at the end costs nothing more than the last piece. A piece waits in memory until
    its turn: at most the pieces in flight."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.upto = 0
        self._waiting: dict[int, list[bytes]] = {}
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Future] = []

    def add(self, offset: int, blocks: list[bytes]) -> None:
        self._waiting[offset] = blocks
        self._tasks.append(asyncio.ensure_future(self._drain()))

    async def _drain(self) -> None:
        async with self._lock:
            while self.upto in self._waiting:
                blocks = self._waiting.pop(self.upto)
                await asyncio.to_thread(_update, self.digest, blocks)
                self.upto += sum(len(b) for b in blocks)

    async def hexdigest(self) -> str:
        await asyncio.gather(*self._tasks)
        return self.digest.hexdigest()

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()


def _update(digest: hashlib._Hash, blocks: list[bytes]) -> None:
    for block in blocks:
        digest.update(block)


class Copier:
    """The pieces of one pull: fetched several at once, written, logged, then each file
    verified against the sender's SHA-256 (moved from .part to its name once it matches)."""

    def __init__(
        self,
        links: LinkSource,
        model_id: str,
        manifest: Manifest,
        staging: Path,
        pieces: list[Piece],
        verified: frozenset[str],
        report: Report,
    ) -> None:
        self.links, self.link = links, links()
        self.model_id, self.manifest = model_id, manifest
        self.staging, self.report = staging, report
        self.queue: asyncio.Queue[Piece] = asyncio.Queue()
        for piece in pieces:
            self.queue.put_nowait(piece)
        self.left: dict[str, int] = {}  # pieces still to come per file
        for piece in pieces:
            self.left[piece.name] = self.left.get(piece.name, 0) + 1
        self.verified = set(verified)
        self.received = 0
        self.done = manifest.total_bytes - bytes_of(pieces)
        self.fds: dict[str, int] = {}
        self.log = (staging / LOG_FILE).open("a")
        self.checks: list[asyncio.Task] = []
        self._last_report = 0.0
        # Files fetched whole in this attempt are hashed while they arrive; a file resumed from
        # an earlier attempt is hashed from disk at the end.
        resumed = {f.name for f in manifest.files} - {p.name for p in pieces if p.index == 0}
        fresh = {p.name for p in pieces} - resumed
        self.hashers = {name: InOrderHash() for name in fresh}
        self.threads = Threads()  # file writes: done before a descriptor is closed
        self.bulk: BulkReader | None = None

    async def run(self, in_flight: int, bulk: bool) -> None:
        session = bulk_session()
        if bulk:
            self.bulk = BulkReader(self.link, self.model_id, session, self.threads)
        try:
            for name in [f.name for f in self.manifest.files if f.name not in self.verified]:
                if self.left.get(name, 0) == 0:  # every piece came in an earlier attempt
                    self.checks.append(asyncio.ensure_future(self._verify(name)))
            workers = [asyncio.ensure_future(self._work()) for _ in range(in_flight)]
            try:
                await asyncio.gather(*workers)
                self.report(self._progress("verifying"))
                await asyncio.gather(*self.checks)
            finally:
                for task in workers + self.checks:
                    task.cancel()
                for hasher in self.hashers.values():
                    hasher.cancel()
                await asyncio.gather(*workers, *self.checks, return_exceptions=True)
        finally:
            await session.close()
            await self.threads.drain()
            self.log.close()
            for fd in self.fds.values():
                os.close(fd)

    def _progress(self, stage: str) -> PullProgress:
        return PullProgress(self.done, self.manifest.total_bytes, self.received, stage)

    def _fd(self, name: str) -> int:
        if name not in self.fds:
            path = self.staging / f"{check_name(name)}.part"
            self.fds[name] = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        return self.fds[name]

    async def _work(self) -> None:
        while not self.queue.empty():
            piece = self.queue.get_nowait()
            await self._fetch(piece)
            self.log.write(log_line(piece))
            self.log.flush()
            self.left[piece.name] -= 1
            if self.left[piece.name] == 0:
                self.checks.append(asyncio.ensure_future(self._verify(piece.name)))

    def _arrived(self, count: int) -> None:
        self.received += count
        self.done += count
        now = time.monotonic()
        if now - self._last_report > 0.1:
            self._last_report = now
            self.report(self._progress("copying"))

    async def _fetch(self, piece: Piece) -> None:
        fd = self._fd(piece.name)
        blocks: list[bytes] | None = None
        for _ in range(RELINKS):
            link, arrived = self.link, [0]

            def count(n: int, arrived: list[int] = arrived) -> None:
                arrived[0] += n
                self._arrived(n)

            try:
                blocks = await self._fetch_once(piece, fd, count)
                break
            except LinkLost:
                # Bytes of the failed try are fetched again: they do not count twice.
                self.received -= arrived[0]
                self.done -= arrived[0]
                fresh = relinked(self.links, link)
                if fresh is None:
                    break
                if self.link is link:  # the first worker to notice moves every worker over
                    log.info("%s: the copy goes on over the new link", link.peer.name)
                    self.link = fresh
                    if self.bulk is not None:
                        self.bulk.link = fresh
        if blocks is None:
            raise TransferError(
                f"{self.link.peer.name} went away during the copy; run the pull again to go on"
            )
        hasher = self.hashers.get(piece.name)
        if hasher is not None:
            hasher.add(piece.offset, blocks)

    async def _fetch_once(self, piece: Piece, fd: int, count: Callable[[int], None]) -> list[bytes]:
        """One try at a piece; LinkLost when the link it began on was replaced or lost."""
        peer = self.link.peer.name
        blocks: list[bytes] | None = None
        try:
            if self.bulk is not None:
                try:
                    blocks = await self.bulk.fetch(piece, fd, count)
                except OldPeer:
                    log.info("%s serves no bulk path: copying over the link", peer)
                    self.bulk = None
            if blocks is None:
                blocks = await self._fetch_over_link(piece, fd, count)
        except RemoteError as exc:
            raise TransferError(f"{peer}: {exc}") from None
        except CryptoFailure as exc:  # the piece is not logged: fetched again next time
            raise TransferError(f"a piece of {piece.name} from {peer}: {exc}") from None
        except (ConnectionError, aiohttp.ClientError, asyncio.IncompleteReadError):
            raise TransferError(
                f"{peer} went away during the copy; run the pull again to go on"
            ) from None
        return blocks

    async def _fetch_over_link(
        self, piece: Piece, fd: int, count: Callable[[int], None]
    ) -> list[bytes]:
        body = {
            "model": self.model_id, "name": piece.name, "offset": piece.offset,
            "length": piece.length,
        }  # fmt: skip
        offset = piece.offset
        blocks: list[bytes] = []
        stream = await self.link.open(MODEL_READ, body)
        try:
            async for payload in stream:
                if offset + len(payload) > piece.offset + piece.length:
                    raise TransferError(f"{self.link.peer.name} sent more than was asked")
                blocks.append(payload)
                await self.threads.run(os.pwrite, fd, payload, offset)
                offset += len(payload)
                count(len(payload))
        finally:
            await stream.aclose()
        if offset != piece.offset + piece.length:
            raise TransferError(f"{self.link.peer.name} sent a short piece of {piece.name}")
        return blocks

    async def _verify(self, name: str) -> None:
        entry = self.manifest.entry(name)
        assert entry is not None
        part = self.staging / f"{name}.part"
        if entry.size == 0 and not part.exists():
            part.touch()
        hasher = self.hashers.get(name)
        if hasher is not None:
            await hasher.hexdigest()  # what is still queued for hashing
        if hasher is not None and hasher.upto == entry.size:
            digest = hasher.digest.hexdigest()
        else:
            digest = await asyncio.to_thread(sha256_file, part)
        if digest != entry.sha256:
            await asyncio.to_thread(self._drop, name)
            raise TransferError(
                f"{name} does not match the sender's SHA-256 (damaged on the way or on disk); "
                "it was thrown away: run the pull again"
            )
        os.replace(part, self.staging / name)
        self.verified.add(name)

    def _drop(self, name: str) -> None:
        (self.staging / f"{name}.part").unlink(missing_ok=True)
        text = (self.staging / LOG_FILE).read_text()
        kept = [
            line for line in text.splitlines(keepends=True) if line.split(" ", 1)[-1] != f"{name}\n"
        ]
        (self.staging / LOG_FILE).write_text("".join(kept))
