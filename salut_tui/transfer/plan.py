"""What is still to fetch: pieces, resume state, room on disk (pure).

A file is fetched in pieces of `PIECE_SIZE` bytes (the last one shorter), several at once, each
written at its offset into `<name>.part` in the staging directory. A finished piece is noted in
`pieces.log` (one "index name" line), so a copy that was interrupted (either side killed) goes
on from the pieces it has. A piece noted but not on disk after all (a power cut) is caught by the
SHA-256 check at the end, which throws the file away and fetches it again.
"""

from __future__ import annotations

from dataclasses import dataclass

from salut_tui.transfer.manifest import FileEntry, Manifest, TransferError

PIECE_SIZE = 8 * 1024 * 1024
SPACE_MARGIN = 256 * 1024 * 1024  # kept free beyond the copy itself


@dataclass(frozen=True, slots=True)
class Piece:
    name: str
    index: int
    offset: int
    length: int


def pieces_of(entry: FileEntry, piece_size: int = PIECE_SIZE) -> list[Piece]:
    count = max(1, -(-entry.size // piece_size))
    return [
        Piece(entry.name, i, i * piece_size, min(piece_size, entry.size - i * piece_size))
        for i in range(count)
    ]


def log_line(piece: Piece) -> str:
    return f"{piece.index} {piece.name}\n"


def parse_log(text: str) -> set[tuple[str, int]]:
    """The pieces a log notes as done; a torn last line (killed mid-write) is ignored."""
    done = set()
    for line in text.split("\n")[:-1]:  # only lines that got their newline
        index, _, name = line.partition(" ")
        if index.isdigit() and name:
            done.add((name, int(index)))
    return done


@dataclass(frozen=True, slots=True)
class ResumeState:
    """What an earlier attempt left that still counts against the manifest now."""

    done: frozenset[tuple[str, int]]  # pieces of files not yet verified
    verified: frozenset[str]  # files complete and checked against their SHA-256


def resume(
    old: Manifest | None,
    new: Manifest,
    logged: set[tuple[str, int]],
    verified: set[str],
) -> ResumeState:
    """Keep what an earlier attempt fetched, file by file, only where the sender's file is still
    the same one (same size and SHA-256); anything else starts again."""
    same = {f.name for f in new.files if old is not None and old.entry(f.name) == f}
    return ResumeState(
        frozenset((n, i) for n, i in logged if n in same and n not in verified),
        frozenset(verified & same),
    )


def missing_pieces(
    manifest: Manifest, state: ResumeState, piece_size: int = PIECE_SIZE
) -> list[Piece]:
    """Pieces still to fetch, smallest files first (config and tokenizer arrive early), then in
    file order, so a file completes (and is verified) while others still travel."""
    out = []
    for entry in sorted(manifest.files, key=lambda f: (f.size, f.name)):
        if entry.name in state.verified:
            continue
        out += [p for p in pieces_of(entry, piece_size) if (p.name, p.index) not in state.done]
    return out


def bytes_of(pieces: list[Piece]) -> int:
    return sum(p.length for p in pieces)


def check_space(needed: int, free: int, margin: int = SPACE_MARGIN) -> None:
    """Refuse a copy that would not fit, before any byte is written."""
    if needed + margin > free:
        raise TransferError(
            f"not enough disk space: the copy needs {needed / 1e9:.2f} GB more and "
            f"{free / 1e9:.2f} GB is free (keeping {margin / 1e9:.2f} GB spare)"
        )


def staging_name(model_id: str) -> str:
    """The staging directory's name for a model id (`org--name`)."""
    return model_id.replace("/", "--")
