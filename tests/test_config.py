from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from salut_tui.config import (
    DEFAULT_PORT,
    ConfigError,
    Settings,
    find_config,
    load_settings,
    save_settings,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "salut.toml.example"


def test_defaults_follow_the_contract() -> None:
    s = Settings()
    assert s.port == DEFAULT_PORT == 7258
    assert s.default_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert s.api_key == ""
    assert s.mode == "cluster"


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = tmp_path / "a.toml"
    env = tmp_path / "b.toml"
    explicit.write_text("port = 1\n")
    env.write_text("port = 2\n")
    monkeypatch.setenv("SALUT_CONFIG", str(env))
    assert find_config(explicit) == explicit
    assert find_config(None) == env
    monkeypatch.delenv("SALUT_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert find_config(None) is None  # nothing there: defaults
    platform_file = tmp_path / "xdg" / "salut" / "salut.toml"
    platform_file.parent.mkdir(parents=True)
    platform_file.write_text("port = 3\n")
    assert find_config(None) == platform_file
    assert load_settings(find_config(None)).port == 3


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        find_config(tmp_path / "nope.toml")


def test_bad_value_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "salut.toml"
    path.write_text('port = "seven"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(path) in str(info.value) and "'port'" in str(info.value)


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "salut.toml"
    path.write_text("prot = 7258\n")
    with pytest.raises(ConfigError, match=r"key 'prot'"):
        load_settings(path)


def test_invalid_toml_names_file(tmp_path: Path) -> None:
    path = tmp_path / "salut.toml"
    path.write_text("port = = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_settings(path)
    assert str(path) in str(info.value)


def test_save_round_trips_atomically(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "salut.toml"
    s = Settings(port=9000, api_key="k", models={"org/m": "/models/m"}, preload=["org/m"])
    save_settings(s, path)
    assert load_settings(path) == s
    assert [p.name for p in path.parent.iterdir()] == ["salut.toml"]  # no temp file left behind
    s.port = 9001
    before = os.stat(path).st_ino
    save_settings(s, path)
    assert os.stat(path).st_ino != before  # replaced by rename, not rewritten in place
    assert load_settings(path).port == 9001


def test_example_documents_every_key_with_its_default() -> None:
    text = EXAMPLE.read_text()
    data = tomllib.loads(text)
    defaults = Settings().model_dump(mode="json")
    for key, value in defaults.items():
        assert f"{key} =" in text or f"# {key} =" in text or f"[{key}]" in text, key
        if key in data:
            assert data[key] == value, f"{key}: example says {data[key]!r}, default is {value!r}"
    # Every field has a docstring (shown as a description in the schema).
    for name, field in Settings.model_fields.items():
        assert field.description, f"Settings.{name} has no docstring"
