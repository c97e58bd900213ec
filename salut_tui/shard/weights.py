"""Which weight files one stage of a sharded model needs (pure: no I/O).

A model saved in several safetensors files has an index (`model.safetensors.index.json`) whose
`weight_map` names the file of every tensor. A stage holding decoder layers [start, end) needs
the files of those layers' tensors; the first stage (rank 0) also the token embeddings; the
last stage the final norm, the head and anything else outside the layers (and the embeddings
again when the head is tied to them, as `PipelineStage` keeps them there). A tensor split keeps
a slice of every tensor on every rank: it needs every file.

Whenever the answer is not certain (no index, an unreadable one, a file the index names that
the model does not have), the answer is the whole model: a stage given too few files fails to
load, one given too many only costs disk space.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from salut_tui.transfer.manifest import is_weight_file

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")
_EMBED = ("embed_tokens.", "wte.", "tok_embeddings.", "word_embeddings.")


@dataclass(frozen=True, slots=True)
class StageNeeds:
    """What one rank keeps: its layers, and the special tensors of the first or last stage."""

    layer_start: int
    layer_end: int
    first: bool
    last: bool
    whole: bool = False  # a tensor split: a slice of everything


def has_head(weight_map: Mapping[str, str]) -> bool:
    """The model stores its own output head (else the head is the embeddings, tied)."""
    return any("lm_head" in name for name in weight_map)


def tied_embeddings(config: Mapping[str, object], weight_map: Mapping[str, str]) -> bool:
    """As `shape.model_shape` decides it, from the index instead of the weights on disk (a
    partial copy may not hold the file with the head)."""
    head = has_head(weight_map)
    return bool(config.get("tie_word_embeddings", not head)) and not head


def tensor_needed(name: str, needs: StageNeeds, num_layers: int, tied: bool) -> bool:
    """Whether a stage keeps the tensor `name` (or a part of it)."""
    if needs.whole:
        return True
    match = _LAYER.search(name)
    if match is not None and int(match.group(1)) < num_layers:
        return needs.layer_start <= int(match.group(1)) < needs.layer_end
    if any(marker in name for marker in _EMBED):
        return needs.first or (needs.last and tied)
    return needs.last  # final norm, head, extra layers (multi-token prediction): the last stage


def stage_files(
    weight_map: Mapping[str, str] | None,
    files: Iterable[str],
    needs: StageNeeds,
    num_layers: int,
    tied: bool,
) -> frozenset[str]:
    """The weight files (among `files`, the model's own) that the stage `needs` must have; all
    of them when the index is missing or does not fit the model's files."""
    weights = frozenset(f for f in files if is_weight_file(f))
    if weight_map is None or needs.whole or not weights:
        return weights
    if not set(weight_map.values()) <= weights:
        return weights  # the index names a file the model lacks: it cannot be trusted
    return frozenset(
        file for name, file in weight_map.items() if tensor_needed(name, needs, num_layers, tied)
    )


def covers(
    held: Iterable[str],
    weight_map: Mapping[str, str] | None,
    needs: StageNeeds,
    num_layers: int,
    tied: bool,
) -> bool:
    """Whether the weight files `held` (a partial copy) are enough for the stage `needs`."""
    held = frozenset(held)
    if weight_map is None:
        return False  # without an index only a whole copy is known to be enough
    wanted = stage_files(weight_map, set(weight_map.values()), needs, num_layers, tied)
    return wanted <= held


@dataclass(frozen=True, slots=True)
class WeightLayout:
    """How a model's weights lie in its files (read by `shape.weight_layout`)."""

    sizes: Mapping[str, int]  # every model file (weights, config, tokenizer, index) -> bytes
    weight_map: Mapping[str, str] | None  # the index's table; None without a usable one
    num_layers: int
    tied: bool

    @property
    def weight_files(self) -> frozenset[str]:
        return frozenset(f for f in self.sizes if is_weight_file(f))

    def files_for(self, needs: StageNeeds) -> frozenset[str]:
        return stage_files(self.weight_map, self.sizes, needs, self.num_layers, self.tied)

    def covered(self, held: Iterable[str], needs: StageNeeds) -> bool:
        return covers(held, self.weight_map, needs, self.num_layers, self.tied)

    def copy_bytes(self, weights: Iterable[str]) -> int:
        """Bytes a copy of these weight files moves, with every small file it always takes."""
        small = sum(size for f, size in self.sizes.items() if not is_weight_file(f))
        return small + sum(self.sizes.get(f, 0) for f in set(weights))
