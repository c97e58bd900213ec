"""Loading one model into memory with real progress, for the MLX thread.

mlx-lm builds the model lazily (`load_model(..., lazy=True)`: the safetensors are mapped, nothing
is read yet); the parameters are then evaluated in groups of roughly equal size, and each group's
bytes are reported, so progress follows the bytes actually brought into memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten
from mlx_lm.utils import load_model, load_tokenizer

from salut_tui.engine.memory import model_size_bytes

# Context length when a config names none of the usual keys.
FALLBACK_CONTEXT_LENGTH = 4096
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "n_ctx")
# Number of evaluation groups, i.e. progress reports, per load.
_PROGRESS_STEPS = 20

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class LoadedModelInfo:
    model_id: str
    path: Path
    size_bytes: int
    memory_bytes: int
    context_length: int
    loaded_at: float


@dataclass
class LoadedModel:
    """A model the MLX thread holds: only that thread touches `model`."""

    info: LoadedModelInfo
    model: Any
    tokenizer: Any


def context_length(config: dict) -> int:
    """The longest sequence the model was trained for, from its config."""
    for source in (config, config.get("text_config") or {}):
        for key in _CONTEXT_KEYS:
            value = source.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return FALLBACK_CONTEXT_LENGTH


def load_with_progress(model_id: str, path: Path, progress: Progress) -> LoadedModel:
    progress(0.0, "reading config")
    model, config = load_model(path, lazy=True)
    tokenizer = load_tokenizer(path, eos_token_ids=config.get("eos_token_id"))
    flat: list[tuple[str, mx.array]] = tree_flatten(model.parameters())  # type: ignore[assignment]
    parameters = [array for _, array in flat]
    total = sum(a.nbytes for a in parameters)  # known before evaluation: shape x dtype
    target = max(total, 1) / _PROGRESS_STEPS
    done, group, group_bytes = 0, [], 0
    for array in parameters:
        group.append(array)
        group_bytes += array.nbytes
        if group_bytes >= target:
            mx.eval(group)
            done += group_bytes
            group, group_bytes = [], 0
            progress(min(done / max(total, 1), 1.0), "loading weights")
    if group:
        mx.eval(group)
        done += group_bytes
    progress(1.0, "ready")
    info = LoadedModelInfo(
        model_id=model_id,
        path=path,
        size_bytes=model_size_bytes(path),
        memory_bytes=total,
        context_length=context_length(config),
        loaded_at=time.time(),
    )
    return LoadedModel(info=info, model=model, tokenizer=tokenizer)
