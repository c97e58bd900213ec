"""The pure parts of a model copy (names, manifest checks, pieces, resume, space, rate) and of
keep-alive (durations, deadlines)."""

from __future__ import annotations

from pathlib import Path

import pytest

from salut_tui.keepalive import FOREVER, KeepAlive, describe, parse_keep_alive
from salut_tui.transfer.manifest import (
    FileEntry,
    Manifest,
    TransferError,
    build_manifest,
    check_name,
    model_file_names,
)
from salut_tui.transfer.plan import (
    Piece,
    ResumeState,
    check_space,
    missing_pieces,
    parse_log,
    pieces_of,
    resume,
)
from salut_tui.transfer.progress import RateMeter, bar_line

SHA = "ab" * 32


@pytest.mark.parametrize(
    "name",
    ["../config.json", "a/b.json", "/etc/passwd", ".hidden.json", "run.py", "", "x\\y.json",
     "weights.bin", "..", "a\0.json", 7, None],
)  # fmt: skip
def test_names_outside_a_model_directory_are_refused(name: object) -> None:
    with pytest.raises(TransferError):
        check_name(name)


def test_model_files_are_the_model_s_own(tmp_path: Path) -> None:
    for name in ("config.json", "model.safetensors", "tokenizer.json", "run.py", ".x.json"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "sub.json").mkdir()
    assert model_file_names(tmp_path) == ["config.json", "model.safetensors", "tokenizer.json"]
    manifest = build_manifest("o/m", tmp_path)
    assert [f.name for f in manifest.files] == model_file_names(tmp_path)
    assert Manifest.from_json(manifest.to_json()) == manifest


@pytest.mark.parametrize(
    "files, reason",
    [
        ([{"name": "../x.json", "size": 1, "sha256": SHA}], "refused file name"),
        ([{"name": "config.json", "size": -1, "sha256": SHA}], "bad file size"),
        ([{"name": "config.json", "size": 1, "sha256": "nope"}], "bad SHA-256"),
        ([{"name": "tokenizer.json", "size": 1, "sha256": SHA}], "no config.json"),
        ([{"name": "config.json", "size": 1, "sha256": SHA}] * 2, "twice"),
    ],
)
def test_a_peer_s_manifest_is_checked(files: list, reason: str) -> None:
    with pytest.raises(TransferError, match=reason):
        Manifest.from_json({"model": "o/m", "files": files})


def test_pieces_cover_each_file_exactly() -> None:
    assert pieces_of(FileEntry("a.safetensors", 10, SHA), 4) == [
        Piece("a.safetensors", 0, 0, 4), Piece("a.safetensors", 1, 4, 4),
        Piece("a.safetensors", 2, 8, 2),
    ]  # fmt: skip
    assert pieces_of(FileEntry("e.json", 0, SHA), 4) == [Piece("e.json", 0, 0, 0)]


def test_resume_keeps_only_pieces_of_unchanged_files() -> None:
    old = Manifest("o/m", (FileEntry("config.json", 3, SHA), FileEntry("w.safetensors", 10, SHA)))
    changed = FileEntry("w.safetensors", 10, "cd" * 32)
    new = Manifest("o/m", (FileEntry("config.json", 3, SHA), changed))
    logged = parse_log("0 w.safetensors\n1 w.safetensors\n0 config.json\n2 w.saf")  # torn line
    assert logged == {("w.safetensors", 0), ("w.safetensors", 1), ("config.json", 0)}
    same = resume(old, old, logged, {"config.json"})
    assert same == ResumeState(
        frozenset({("w.safetensors", 0), ("w.safetensors", 1)}), frozenset({"config.json"})
    )
    assert [p.index for p in missing_pieces(old, same, 4)] == [2]
    again = resume(old, new, logged, {"config.json"})  # the sender's weights changed
    assert [p.index for p in missing_pieces(new, again, 4)] == [0, 1, 2]
    assert resume(None, new, logged, set()).done == frozenset()  # no saved manifest: restart


def test_space_is_checked_before_copying() -> None:
    check_space(100, 1000, margin=10)
    with pytest.raises(TransferError, match="not enough disk space"):
        check_space(995, 1000, margin=10)


def test_rate_and_eta() -> None:
    meter = RateMeter(total=1000, done=0, now=0.0)
    meter.update(100, 1.0)
    snap = meter.update(200, 2.0)
    assert snap.rate == pytest.approx(100.0) and snap.eta == pytest.approx(8.0)
    assert "20%" in bar_line("x", snap) and "ETA 00:08" in bar_line("x", snap)


@pytest.mark.parametrize(
    "value, seconds",
    [("5m", 300.0), ("30s", 30.0), ("1h30m", 5400.0), ("250ms", 0.25), (90, 90.0), ("0", 0.0),
     (-1, FOREVER), ("-1", FOREVER), ("-1m", FOREVER), (2.5, 2.5)],
)  # fmt: skip
def test_keep_alive_durations(value: object, seconds: float | None) -> None:
    assert parse_keep_alive(value) == seconds  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["", "5 minutes", "m5", "5x", True])
def test_bad_keep_alive_durations(value: object) -> None:
    with pytest.raises(ValueError):
        parse_keep_alive(value)  # type: ignore[arg-type]


def test_keep_alive_deadlines() -> None:
    ka = KeepAlive(default=10.0)
    ka.loaded("m", now=0.0)
    ka.loaded("kept", now=0.0, keep_alive=FOREVER)
    assert ka.time_left("m", 4.0) == 6.0 and ka.time_left("kept", 1e9) is FOREVER
    ka.began("m", 5.0)
    assert ka.expired(100.0) == []  # busy: never expires
    ka.ended("m", 8.0)
    assert ka.time_left("m", 9.0) == 9.0 and ka.expired(18.0) == ["m"]
    ka.began("m", 20.0, keep_alive=2.0)  # a request's own keep-alive
    ka.ended("m", 21.0)
    assert ka.expired(23.0) == ["m"]
    ka.unloaded("m")
    assert ka.expired(1e9) == [] and describe(90) == "1m30s" and describe(None) == "kept loaded"
