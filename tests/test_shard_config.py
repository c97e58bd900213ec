"""`[[shard]]` tables in salut.toml: typed, validated, with defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from salut_tui.config import ConfigError, load_settings


def test_shard_tables_are_read(tmp_path: Path) -> None:
    path = tmp_path / "salut.toml"
    path.write_text(
        '[[shard]]\nmodel = "org/big"\nnodes = ["laptop"]\n\n'
        '[[shard]]\nmodel = "org/other"\nmode = "tensor"\n'
    )
    shards = load_settings(path).shard
    assert [(s.model, s.nodes, s.mode) for s in shards] == [
        ("org/big", ["laptop"], "pipeline"),
        ("org/other", [], "tensor"),
    ]


def test_a_bad_shard_table_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "salut.toml"
    path.write_text('[[shard]]\nmodel = "org/big"\nmode = "diagonal"\n')
    with pytest.raises(ConfigError, match=r"shard\.0\.mode"):
        load_settings(path)
