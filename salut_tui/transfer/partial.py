"""Partial copies: some of a model's weight files, for the layers a node runs in a sharded plan.

A partial copy lives apart from whole models, in `<models_dir>/.partial/<org>--<name>/`: the
registry skips dot directories, so it is never listed, offered to peers or loaded as a model of
its own. Only sharding looks there, for the layers the copy holds. A marker file in it
(`.salut-partial.json`, the manifest of the files it holds, each verified when it arrived) says
what it is; a directory without a readable marker is not a partial copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from salut_tui.transfer.manifest import (
    INDEX_FILE,
    Manifest,
    TransferError,
    check_names,
    is_weight_file,
    parse_weight_map,
)
from salut_tui.transfer.plan import staging_name

PARTIAL = ".partial"
MARKER = ".salut-partial.json"


def partial_directory(models_root: Path, model_id: str) -> Path:
    parts = model_id.split("/")
    if len(parts) != 2 or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise TransferError(f"'{model_id}' is not an org/name model id")
    return models_root / PARTIAL / staging_name(model_id)


def read_marker(directory: Path) -> Manifest | None:
    """What the partial copy in `directory` holds (files present with their size), or None."""
    try:
        manifest = Manifest.from_json(json.loads((directory / MARKER).read_text()))
    except (OSError, ValueError, TransferError):
        return None
    present = tuple(
        f for f in manifest.files
        if (directory / f.name).is_file() and (directory / f.name).stat().st_size == f.size
    )  # fmt: skip
    return Manifest(manifest.model_id, present)


def held_weights(models_root: Path, model_id: str) -> frozenset[str]:
    """The weight files of `model_id` that this node's partial copy holds (none: empty)."""
    with contextlib.suppress(TransferError):
        marker = read_marker(partial_directory(models_root, model_id))
        if marker is not None:
            return frozenset(f.name for f in marker.files if is_weight_file(f.name))
    return frozenset()


def write_marker(directory: Path, manifest: Manifest) -> None:
    (directory / MARKER).write_text(json.dumps(manifest.to_json()))


def adopt(staging: Path, manifest: Manifest, directory: Path) -> frozenset[str]:
    """Link into `staging` the files a partial copy in `directory` already holds in the very
    version `manifest` describes (same size and SHA-256): they need not travel again."""
    marker = read_marker(directory)
    if marker is None:
        return frozenset()
    adopted = set()
    for entry in marker.files:
        if manifest.entry(entry.name) != entry:
            continue
        target = staging / entry.name  # whatever an attempt left under that name goes
        target.unlink(missing_ok=True)
        _link_or_copy(directory / entry.name, target)
        adopted.add(entry.name)
    return frozenset(adopted)


def covers_every_weight(manifest: Manifest, directory: Path) -> bool:
    """The copy in `directory` holds every weight file its index names: it is whole."""
    try:
        weight_map = parse_weight_map((directory / INDEX_FILE).read_bytes())
    except OSError:
        return False
    if weight_map is None:
        return False
    return set(weight_map.values()) <= {f.name for f in manifest.files}


def publish(staging: Path, final: Path, partial: Path, manifest: Manifest, whole: bool) -> Path:
    """Move a verified copy in `staging` to where it belongs: the models dir when whole (then a
    partial copy of it goes), else the partial copies, keeping what an earlier partial copy of
    the same version held. Each step is a rename: nothing ever sees half a directory."""
    entries = {f.name: f for f in manifest.files}
    old = read_marker(partial) if partial.is_dir() else None
    if not whole and old is not None and old.entry("config.json") == entries.get("config.json"):
        for entry in old.files:
            if entry.name not in entries:
                _link_or_copy(partial / entry.name, staging / entry.name)
                entries[entry.name] = entry
    merged = Manifest(manifest.model_id, tuple(entries[n] for n in sorted(entries)))
    whole = whole or covers_every_weight(merged, staging)
    if whole:
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging, final)
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        return final
    write_marker(staging, merged)
    partial.parent.mkdir(parents=True, exist_ok=True)
    trash = partial.with_name(f".old-{partial.name}-{secrets.token_hex(4)}")
    if partial.exists():
        os.rename(partial, trash)  # a runner reading the old files keeps them (links, mmaps)
    os.rename(staging, partial)
    shutil.rmtree(trash, ignore_errors=True)
    return partial


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another filesystem, or no hard links there
        shutil.copy2(source, target)


MAX_PARTIAL_MODELS = 64  # partial copies a node tells its peers about


def list_partials(models_root: Path) -> dict[str, list[str]]:
    """Every partial copy here: model id -> the weight files it holds (what peers planning a
    sharded load are told, so a node that holds its layers needs no copy again)."""
    root = models_root / PARTIAL
    if not root.is_dir():
        return {}
    found: dict[str, list[str]] = {}
    for directory in sorted(root.iterdir())[:MAX_PARTIAL_MODELS]:
        if directory.name.startswith(".") or "--" not in directory.name:
            continue
        marker = read_marker(directory)
        if marker is None:
            continue
        weights = sorted(f.name for f in marker.files if is_weight_file(f.name))
        if weights:
            found[directory.name.replace("--", "/", 1)] = weights
    return found


@dataclass(frozen=True, slots=True)
class PartialCopy:
    """A partial copy on this node, as `salut models` lists it."""

    model: str
    weights: tuple[str, ...]  # the weight files it holds
    bytes: int  # every file it holds (config and tokenizer too)


def partial_copies(models_root: Path) -> list[PartialCopy]:
    """Every partial copy here with the weight files it holds and its size on disk."""
    found = []
    for model in list_partials(models_root):
        with contextlib.suppress(TransferError):
            marker = read_marker(partial_directory(models_root, model))
            if marker is not None:
                weights = tuple(sorted(f.name for f in marker.files if is_weight_file(f.name)))
                found.append(PartialCopy(model, weights, sum(f.size for f in marker.files)))
    return found


def clean_partials(value: object) -> dict[str, list[str]]:
    """A peer's list of partial copies as data: plain model ids and plain file names only."""
    if not isinstance(value, dict):
        return {}
    out: dict[str, list[str]] = {}
    for model, names in list(value.items())[:MAX_PARTIAL_MODELS]:
        if not isinstance(model, str) or not isinstance(names, list):
            continue
        with contextlib.suppress(TransferError):
            partial_directory(Path("."), model)  # an org/name id, or nothing
            out[model] = sorted(n for n in (check_names(names) or ()) if is_weight_file(n))
    return out
