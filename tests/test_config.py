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
    is_host,
    is_host_port,
    load_settings,
    save_changes,
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


def test_save_changes_keeps_comments_order_and_other_keys(tmp_path: Path) -> None:
    path = tmp_path / "salut.toml"
    original = '# top comment\nport = 9000  # my port\n\n[models]\n"org/m" = "/m"\n'
    path.write_text(original)
    path.chmod(0o600)
    settings = save_changes(path, {"port": 9001, "node_name": "mini"})
    text = path.read_text()
    assert text.startswith("# top comment\nport = 9001  # my port\n")
    assert '"org/m" = "/m"' in text and "host" not in text  # only what changed is written
    assert settings.port == 9001 and settings.node_name == "mini"
    assert load_settings(path) == settings
    assert path.stat().st_mode & 0o777 == 0o600  # a file that may hold a key stays private


def test_save_changes_validates_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "salut.toml"
    path.write_text("# mine\n")
    for key, value in (("host", "not a host!"), ("peers", ["nowhere"]), ("log_level", "LOUD")):
        with pytest.raises(ConfigError, match=f"key '{key}'") as info:
            save_changes(path, {key: value})
        assert str(path) in str(info.value)
    assert path.read_text() == "# mine\n"
    assert [p.name for p in tmp_path.iterdir()] == ["salut.toml"]


def test_hosts_and_peers() -> None:
    assert all(is_host(h) for h in ("", "0.0.0.0", "::", "fe80::1", "mini.local", "my-mac"))
    assert not any(is_host(h) for h in ("not a host!", "-bad", "a..b", "x" * 64))
    assert is_host_port("mini.local:7258") and is_host_port("[::1]:7258")
    assert not any(is_host_port(p) for p in ("mini.local", "mini:0", "mini:99999", ":7258"))
    assert Settings(log_level="debug").log_level == "DEBUG"
