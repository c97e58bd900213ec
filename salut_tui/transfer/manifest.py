"""Which files of a model directory travel, and the manifest that describes them.

Only the files a model is made of go: its config, tokenizer files, weights and weight index, all
directly inside the model directory. A name is a plain file name (no separator, no `..`, no
leading dot), checked on both ends: the sender serves only names it listed itself, the receiver
writes only names that pass `check_name`, so neither side can be made to touch a path outside
the model directory.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# The file patterns mlx-lm downloads for a model, minus code (*.py): nothing executable travels.
MODEL_FILE_PATTERNS = (
    "*.json",
    "*.safetensors",
    "tokenizer.model",
    "*.tiktoken",
    "tiktoken.model",
    "*.txt",
    "*.jsonl",
    "*.jinja",
)
INDEX_FILE = "model.safetensors.index.json"  # which weight file holds which tensor
MAX_FILES = 4096  # a sender listing more is not sending a model
HASH_BLOCK = 4 * 1024 * 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")


class TransferError(Exception):
    """A copy that cannot go on; the message says why in words."""


def check_name(name: object) -> str:
    """`name` when it is a plain model-file name; TransferError otherwise."""
    if (
        not isinstance(name, str)
        or not name
        or len(name) > 255
        or name.startswith(".")
        or "/" in name
        or "\\" in name
        or "\0" in name
        or not any(fnmatch.fnmatchcase(name, p) for p in MODEL_FILE_PATTERNS)
    ):
        raise TransferError(f"refused file name {str(name)[:80]!r}: not a file of a model")
    return name


def check_names(names: object) -> frozenset[str] | None:
    """A list of file names from a peer (each checked), or None when it gave none."""
    if names is None:
        return None
    if not isinstance(names, list) or len(names) > MAX_FILES:
        raise TransferError("the file list must be a list of model file names")
    return frozenset(check_name(n) for n in names)


def is_weight_file(name: str) -> bool:
    """A weights file; every other model file (config, tokenizer, index) is small and needed
    by every copy, whole or partial."""
    return name.endswith(".safetensors")


def parse_weight_map(text: str | bytes) -> dict[str, str] | None:
    """The index's tensor -> file table; None when it cannot be read as one."""
    try:
        body = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return None
    table = body.get("weight_map") if isinstance(body, dict) else None
    if not isinstance(table, dict) or not table:
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in table.items()):
        return None
    if any("/" in v or "\\" in v or not is_weight_file(v) for v in table.values()):
        return None  # a file outside the model directory, or not a weight file: not trusted
    return dict(table)


def model_file_names(directory: Path) -> list[str]:
    """The model files directly inside `directory` (symlinks followed: a Hugging Face cache
    snapshot is made of them), sorted."""
    names = []
    for path in directory.iterdir():
        try:
            check_name(path.name)
        except TransferError:
            continue
        if path.is_file():
            names.append(path.name)
    return sorted(names)


@dataclass(frozen=True, slots=True)
class FileEntry:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Manifest:
    model_id: str
    files: tuple[FileEntry, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def entry(self, name: str) -> FileEntry | None:
        return next((f for f in self.files if f.name == name), None)

    def subset(self, weights: frozenset[str]) -> Manifest:
        """Only the weight files named in `weights`, with every other file (config, tokenizer,
        index): what a copy of some layers takes. TransferError names a file it lacks."""
        unknown = weights - {f.name for f in self.files}
        if unknown:
            raise TransferError(f"the model has no file {sorted(unknown)[0]!r}")
        kept = tuple(f for f in self.files if not is_weight_file(f.name) or f.name in weights)
        return Manifest(self.model_id, kept)

    def to_json(self) -> dict:
        return {
            "model": self.model_id,
            "files": [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in self.files],
        }

    @classmethod
    def from_json(cls, body: object) -> Manifest:
        """A manifest from what a peer sent: every field checked, so it is data, not orders."""
        if not isinstance(body, dict) or not isinstance(body.get("files"), list):
            raise TransferError("the peer sent a malformed manifest")
        raw_files = body["files"]
        if len(raw_files) > MAX_FILES:
            raise TransferError("the peer's manifest lists too many files")
        files = []
        for raw in raw_files:
            if not isinstance(raw, dict):
                raise TransferError("the peer sent a malformed manifest")
            size, sha = raw.get("size"), raw.get("sha256")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise TransferError("the peer's manifest has a bad file size")
            if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
                raise TransferError("the peer's manifest has a bad SHA-256")
            files.append(FileEntry(check_name(raw.get("name")), size, sha))
        if len({f.name for f in files}) != len(files):
            raise TransferError("the peer's manifest lists a file twice")
        if "config.json" not in {f.name for f in files}:
            raise TransferError("the peer's copy has no config.json: not a model")
        return cls(str(body.get("model", "")), tuple(files))


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    """The file's SHA-256 (blocking: call it on a worker thread)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(HASH_BLOCK):
            digest.update(block)
            if on_bytes is not None:
                on_bytes(len(block))
    return digest.hexdigest()


def build_manifest(
    model_id: str,
    directory: Path,
    cache: HashCache | None = None,
    weights: frozenset[str] | None = None,
) -> Manifest:
    """Hash every model file of `directory` (blocking: on a worker thread); with `weights`,
    only those weight files (and every other file): a copy of some layers hashes no more."""
    files = []
    for name in model_file_names(directory):
        if weights is not None and is_weight_file(name) and name not in weights:
            continue
        path = directory / name
        files.append(FileEntry(name, path.stat().st_size, (cache or HashCache()).sha256(path)))
    return Manifest(model_id, tuple(files))


class HashCache:
    """SHA-256s already computed, keyed by (resolved path, size, mtime): a model of 40 GB is
    hashed once per change, not once per pull."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int, int], str] = {}

    def sha256(self, path: Path) -> str:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in self._known:
            self._known[key] = sha256_file(path)
        return self._known[key]
