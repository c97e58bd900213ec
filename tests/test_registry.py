"""Model id resolution: config table, command-line paths, models_dir, Hugging Face cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from salut_tui.config import DEFAULT_MODEL, Settings
from salut_tui.engine.registry import ModelRegistry, hf_cache_dir
from salut_tui.engine.types import ModelError


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def put_in_hf_cache(cache: Path, model_id: str, source: Path, revision: str = "abc123") -> Path:
    """Lay a model out the way huggingface_hub's snapshot_download does."""
    repo = cache / ("models--" + model_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    shutil.copytree(source, snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


def settings(tmp_path: Path, **extra) -> Settings:
    return Settings(data_dir=str(tmp_path / "data"), **extra)


def test_config_table_wins(tmp_path, tiny_model_path, hf_cache) -> None:
    put_in_hf_cache(hf_cache, "org/model", tiny_model_path)
    registry = ModelRegistry(settings(tmp_path, models={"org/model": str(tiny_model_path)}))
    assert registry.resolve("org/model") == tiny_model_path
    assert registry.has("org/model")


def test_config_path_without_a_model_is_a_clear_404(tmp_path, hf_cache) -> None:
    registry = ModelRegistry(settings(tmp_path, models={"org/gone": str(tmp_path / "missing")}))
    with pytest.raises(ModelError) as err:
        registry.resolve("org/gone")
    assert err.value.status == 404 and err.value.code == "model_not_found"
    assert "missing" in err.value.message
    assert not registry.has("org/gone")


@pytest.mark.parametrize("layout", ["org/name", "org--name"])
def test_models_dir_layouts(tmp_path, tiny_model_path, hf_cache, layout) -> None:
    models_dir = tmp_path / "models"
    target = models_dir / layout
    shutil.copytree(tiny_model_path, target)
    registry = ModelRegistry(settings(tmp_path, models_dir=str(models_dir)))
    assert registry.resolve("org/name") == target
    entries = {e.model_id: e for e in registry.available()}
    assert entries["org/name"].source == "models_dir"
    assert entries["org/name"].size_bytes == sum(
        p.stat().st_size for p in target.glob("*.safetensors")
    )


def test_default_models_dir_is_inside_data_dir(tmp_path, tiny_model_path, hf_cache) -> None:
    s = settings(tmp_path)
    shutil.copytree(tiny_model_path, s.models_path() / "org" / "name")
    assert ModelRegistry(s).resolve("org/name") == s.models_path() / "org" / "name"


def test_hf_cache_snapshot(tmp_path, tiny_model_path, hf_cache) -> None:
    snapshot = put_in_hf_cache(hf_cache, "mlx-community/Tiny-4bit", tiny_model_path)
    registry = ModelRegistry(settings(tmp_path))
    assert hf_cache_dir() == hf_cache
    assert registry.resolve("mlx-community/Tiny-4bit") == snapshot
    entries = {e.model_id: e for e in registry.available()}
    assert entries["mlx-community/Tiny-4bit"].source == "hf_cache"
    assert entries["mlx-community/Tiny-4bit"].path == snapshot


def test_hf_home_is_respected(tmp_path, tiny_model_path, monkeypatch) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    snapshot = put_in_hf_cache(tmp_path / "hf-home" / "hub", "org/cached", tiny_model_path)
    assert ModelRegistry(settings(tmp_path)).resolve("org/cached") == snapshot


def test_hf_snapshot_without_refs_uses_newest_usable(tmp_path, tiny_model_path, hf_cache) -> None:
    snapshot = put_in_hf_cache(hf_cache, "org/norefs", tiny_model_path, revision="deadbeef")
    shutil.rmtree(snapshot.parent.parent / "refs")
    # A snapshot holding only the tokenizer (no weights) is not a usable model.
    partial = snapshot.parent / "0000"
    partial.mkdir()
    shutil.copy(tiny_model_path / "config.json", partial / "config.json")
    assert ModelRegistry(settings(tmp_path)).resolve("org/norefs") == snapshot


def test_models_dir_is_checked_before_hf_cache(tmp_path, tiny_model_path, hf_cache) -> None:
    put_in_hf_cache(hf_cache, "org/both", tiny_model_path)
    local = tmp_path / "models" / "org" / "both"
    shutil.copytree(tiny_model_path, local)
    registry = ModelRegistry(settings(tmp_path, models_dir=str(tmp_path / "models")))
    assert registry.resolve("org/both") == local


def test_add_path_serves_a_directory_under_the_path_as_given(
    tmp_path, tiny_model_path, hf_cache
) -> None:
    registry = ModelRegistry(settings(tmp_path))
    model_id = registry.add_path(str(tiny_model_path))
    assert model_id == str(tiny_model_path)
    assert registry.resolve(model_id) == tiny_model_path.resolve()
    assert {e.model_id: e.source for e in registry.available()}[model_id] == "path"
    with pytest.raises(ModelError) as err:
        registry.add_path(str(tmp_path / "not-a-model"))
    assert err.value.status == 404


@pytest.mark.parametrize("model_id", ["nobody/nothing", "../../etc", "org/..", "plain", ""])
def test_unknown_ids_are_404(tmp_path, hf_cache, model_id) -> None:
    registry = ModelRegistry(settings(tmp_path))
    with pytest.raises(ModelError) as err:
        registry.resolve(model_id)
    assert (err.value.status, err.value.code, err.value.param) == (404, "model_not_found", "model")
    assert not registry.has(model_id)


def test_default_model_listed_as_bundled_when_the_wheel_provides_it(tmp_path, hf_cache) -> None:
    try:
        from salut_tui.engine.default_model import bundled_default_available
    except ImportError:
        bundled = False
    else:
        bundled = bundled_default_available()
    entries = {e.model_id: e for e in ModelRegistry(settings(tmp_path)).available()}
    if bundled:
        assert entries[DEFAULT_MODEL].source == "bundled"
        assert entries[DEFAULT_MODEL].path is None
    else:
        assert DEFAULT_MODEL not in entries
