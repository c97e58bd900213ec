"""The receiver's side of a model copy: fetch the missing pieces from a peer, several at once,
write them into a staging directory, verify every file against the sender's SHA-256, and only
then move the directory to where the registry finds models. This module prepares and ends a
pull; the pieces themselves travel in `pull_copier.Copier`.

Bytes travel on the bulk path (bulk.py: one-time tickets over the link, large AES-GCM records
on a plain HTTP connection), or over the link itself when the peer is too old for it.

Staging: `<models_dir>/.incoming/<org>--<name>/` holds `<file>.part` (pieces at their offsets),
`<file>` once verified, and the resume state (`.salut-manifest.json`, `.salut-pieces.log`). The
registry skips dot directories, and the final `rename` is atomic, so a partial copy is never
loadable. Run the pull again after an interruption: it goes on from the pieces it has.

A pull of some weight files only (`files`: a sharded plan's participant getting its layers)
ends in the partial copies instead (`transfer.partial`), never among whole models.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from pathlib import Path

from salut_tui.cluster.link import LinkLost, PeerLink, RemoteError
from salut_tui.cluster.model_service import MODEL_MANIFEST
from salut_tui.cluster.pull_copier import (
    LOG_FILE,
    RELINKS,
    Copier,
    LinkSource,
    PullProgress,
    Report,
    relinked,
)
from salut_tui.transfer.manifest import Manifest, TransferError
from salut_tui.transfer.partial import adopt, partial_directory, publish
from salut_tui.transfer.plan import (
    PIECE_SIZE,
    Piece,
    ResumeState,
    bytes_of,
    check_space,
    missing_pieces,
    parse_log,
    resume,
    staging_name,
)

__all__ = ["INCOMING", "LOG_FILE", "MANIFEST_FILE", "PullProgress", "Report", "pull_model"]

INCOMING = ".incoming"
MANIFEST_FILE = ".salut-manifest.json"
IN_FLIGHT = 4  # pieces fetched at once


def final_directory(models_root: Path, model_id: str) -> Path:
    parts = model_id.split("/")
    if len(parts) != 2 or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise TransferError(f"'{model_id}' is not an org/name model id")
    return models_root / parts[0] / parts[1]


async def pull_model(
    link: PeerLink | LinkSource,
    model_id: str,
    models_root: Path,
    report: Report = lambda _p: None,
    *,
    files: frozenset[str] | None = None,
    in_flight: int = IN_FLIGHT,
    piece_size: int = PIECE_SIZE,
    bulk: bool = True,
) -> Path:
    """Copy `model_id` from the peer at the other end of `link`; its directory here.

    `link` may be a function that returns the peer's current link: the copy then goes on over
    the new link when its link is replaced mid-copy, instead of failing.

    `files`: only these weight files (and every other file of the model: config, tokenizer,
    index), for the layers this node runs in a sharded plan. Such a copy goes to the partial
    copies (`transfer.partial`), never among whole models, unless it turns out whole."""
    final = final_directory(models_root, model_id)
    partial = partial_directory(models_root, model_id)
    if final.exists():
        if files is not None:  # the whole model is here: it has every file asked for
            report(PullProgress(0, 0, 0, "done"))
            return final
        raise TransferError(f"{final} already exists: the model is on this node already")
    report(PullProgress(0, 0, 0, "manifest"))
    ask: dict = {"model": model_id}
    if files is not None:
        ask["files"] = sorted(files)
    links: LinkSource = link if callable(link) else (lambda: link)
    manifest = await _manifest(links, ask)
    if files is not None:
        manifest = manifest.subset(files)
    staging = models_root / INCOMING / staging_name(model_id)
    state, pieces = await asyncio.to_thread(_prepare, staging, manifest, piece_size, partial)
    check_space(bytes_of(pieces), shutil.disk_usage(staging).free)
    copier = Copier(links, model_id, manifest, staging, pieces, state.verified, report)
    await copier.run(in_flight, bulk)
    for name in (MANIFEST_FILE, LOG_FILE):
        (staging / name).unlink(missing_ok=True)
    where = await asyncio.to_thread(publish, staging, final, partial, manifest, files is None)
    report(PullProgress(manifest.total_bytes, manifest.total_bytes, copier.received, "done"))
    return where


async def _manifest(links: LinkSource, ask: dict) -> Manifest:
    link = links()
    for _ in range(RELINKS):
        try:
            return Manifest.from_json(await link.request(MODEL_MANIFEST, ask))
        except RemoteError as exc:
            raise TransferError(f"{link.peer.name}: {exc}") from None
        except (LinkLost, ConnectionError):
            fresh = relinked(links, link)
            if fresh is None:
                break
            link = fresh
    raise TransferError(f"{link.peer.name} went away before the copy began")


def _prepare(
    staging: Path, manifest: Manifest, piece_size: int, partial: Path | None = None
) -> tuple[ResumeState, list[Piece]]:
    """Read what an earlier attempt left, drop what no longer matches, record the manifest;
    files a partial copy here already holds in this version are taken from it."""
    staging.mkdir(parents=True, exist_ok=True)
    adopted = adopt(staging, manifest, partial) if partial is not None else frozenset()
    old = None
    with contextlib.suppress(OSError, ValueError, TransferError):
        old = Manifest.from_json(json.loads((staging / MANIFEST_FILE).read_text()))
    logged = set()
    with contextlib.suppress(OSError):
        logged = parse_log((staging / LOG_FILE).read_text())
    verified = {
        f.name for f in manifest.files
        if (staging / f.name).is_file() and (staging / f.name).stat().st_size == f.size
    }  # fmt: skip
    state = resume(old, manifest, logged, verified)
    state = ResumeState(  # an adopted file is whole: pieces of it from an attempt no longer count
        frozenset(p for p in state.done if p[0] not in adopted), state.verified | adopted
    )
    wanted = {f.name for f in manifest.files}
    for path in staging.iterdir():  # whatever no longer counts goes
        name = path.name.removesuffix(".part")
        if path.name in (MANIFEST_FILE, LOG_FILE):
            continue
        stale_part = path.name.endswith(".part") and not any(n == name for n, _ in state.done)
        if name not in wanted or (path.name == name and name not in state.verified) or stale_part:
            path.unlink()
    (staging / MANIFEST_FILE).write_text(json.dumps(manifest.to_json()))
    (staging / LOG_FILE).write_text("".join(f"{i} {n}\n" for n, i in sorted(state.done)))
    return state, missing_pieces(manifest, state, piece_size)
