"""A copy offered by a peer: the coordinator of a sharded plan asks a participant that lacks a
model's files to copy them from it (only its layers' weight files, or the whole model), before
the sharded load. Both ends, over the peer link:

    model.fetch {model, files?}  -> JSON payloads: {"done", "total", "received", "stage"}...
                                    then {"copied": true, "partial": bool} or {"error"}

The participant runs an ordinary pull (`pull.pull_model`) from the peer that asked, over the
same link: verified, resumable, disk space checked first, written into its own models dir (a
copy of some files only goes to the partial copies, never among whole models). A peer can ask
only for files of a model it holds itself, to be copied from itself. The participant shows the
copy on its own transfers board (kind "fetch", from the peer that asked), so its Models screen
follows it live like a pull.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from salut_tui.cluster.link import LinkLost, PeerLink, RemoteError
from salut_tui.cluster.pull import PullProgress, Report, final_directory, pull_model
from salut_tui.transfer.manifest import TransferError, check_names
from salut_tui.transfers import Transfers

MODEL_FETCH = "model.fetch"


async def serve_fetch(
    link: PeerLink,
    models_root: Path,
    body: dict,
    lock: asyncio.Lock,
    on_done: Callable[[], None] = lambda: None,
    board: Transfers | None = None,
) -> AsyncIterator[bytes]:
    """Copy what `body` names from the peer at the other end of `link`; progress as it goes,
    to the asker and, as a "fetch" transfer, on `board`."""
    model_id = body.get("model")
    if not isinstance(model_id, str) or not model_id:
        raise TransferError("give the model id")
    files = check_names(body.get("files"))
    updates: asyncio.Queue[PullProgress] = asyncio.Queue()
    async with lock:  # one copy of a model at a time: they would share a staging directory
        shown = _Shown(board, model_id, link.peer.name)
        task = asyncio.ensure_future(
            pull_model(link, model_id, models_root, updates.put_nowait, files=files)
        )
        try:
            while not task.done():
                getter = asyncio.ensure_future(updates.get())
                await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    continue
                p = getter.result()
                shown.update(p)
                yield json.dumps(
                    {"done": p.done, "total": p.total, "received": p.received, "stage": p.stage}
                ).encode()
            try:
                where = task.result()
            except TransferError as exc:
                shown.end(str(exc), failed=True)
                yield json.dumps({"error": str(exc)}).encode()
                return
            except OSError as exc:
                why = f"cannot write the copy: {exc.strerror or exc}"
                shown.end(why, failed=True)
                yield json.dumps({"error": why}).encode()
                return
            on_done()
            shown.end(str(where), failed=False)
            partial = where != final_directory(models_root, model_id)
            yield json.dumps({"copied": True, "partial": partial}).encode()
        finally:
            if not task.done():  # the asker went away: stop; the next attempt resumes
                task.cancel()
            shown.end(f"{link.peer.name} stopped the copy; it resumes when asked again", True)
            with contextlib.suppress(BaseException):
                await task


async def ask_fetch(
    link: PeerLink, model_id: str, files: frozenset[str] | None, report: Report
) -> bool:
    """Have the peer at the other end of `link` copy `model_id` (only `files`, when given) from
    this node; returns whether its copy is partial. TransferError says why not, in words."""
    body: dict = {"model": model_id}
    if files is not None:
        body["files"] = sorted(files)
    who = link.peer.name
    try:
        stream = await link.open(MODEL_FETCH, body)
        try:
            async for payload in stream:
                answer = json.loads(payload)
                if "error" in answer:
                    raise TransferError(f"{who}: {answer['error']}")
                if answer.get("copied"):
                    return bool(answer.get("partial"))
                report(
                    PullProgress(
                        int(answer["done"]), int(answer["total"]), int(answer["received"]),
                        str(answer["stage"]),
                    )
                )  # fmt: skip
        finally:
            await stream.aclose()
    except RemoteError as exc:
        raise TransferError(f"{who}: {exc}") from None
    except (LinkLost, ConnectionError):
        raise TransferError(f"{who} went away during the copy; run it again to go on") from None
    except (ValueError, KeyError, TypeError):
        raise TransferError(f"{who} answered the copy with something unreadable") from None
    raise TransferError(f"{who} ended the copy without saying it was done")


class _Shown:
    """The copy as a transfer on this node's board (none: not shown); it ends once."""

    def __init__(self, board: Transfers | None, model_id: str, source: str) -> None:
        self._board = board
        self._id = board.start("fetch", model_id, source) if board is not None else None

    def update(self, p: PullProgress) -> None:
        if self._board is not None and self._id is not None:
            self._board.update(self._id, p.done, p.total, p.received, p.stage)

    def end(self, message: str, failed: bool) -> None:
        if self._board is None or self._id is None:
            return
        if failed:
            self._board.fail(self._id, message)
        else:
            self._board.finish(self._id, message)
        self._id = None
