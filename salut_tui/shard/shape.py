"""A model's shape for placement, read from its directory without loading any weight.

config.json gives the layer count and whether the head is tied to the embeddings; the
safetensors headers (an 8-byte length and a JSON table of names, dtypes and byte ranges) give
every tensor's size. Tensors are attributed by name: `...layers.<i>....` to decoder layer i, the
token embeddings to the first stage, everything else (final norm, lm_head) to the last stage.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

from salut_tui.shard.placement import ModelShape
from salut_tui.shard.weights import WeightLayout, tied_embeddings
from salut_tui.transfer.manifest import INDEX_FILE, model_file_names, parse_weight_map

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")
_EMBED = ("embed_tokens.", "wte.", "tok_embeddings.", "word_embeddings.")
_MAX_HEADER = 100 * 1024**2  # a corrupt length must not make us read gigabytes


def read_config(path: Path) -> dict:
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    text = config.get("text_config")
    if isinstance(text, dict) and "num_hidden_layers" not in config:
        config = {**config, **text}  # multimodal configs nest the language model's settings
    return config


def safetensors_sizes(file: Path) -> dict[str, int]:
    """Bytes of every tensor in one safetensors file, from its header alone."""
    with open(file, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > _MAX_HEADER:
            raise ValueError(f"{file} has an implausible safetensors header ({length} bytes)")
        header = json.loads(handle.read(length))
    return {
        name: int(entry["data_offsets"][1]) - int(entry["data_offsets"][0])
        for name, entry in header.items()
        if name != "__metadata__"
    }


def model_shape(path: Path, model_id: str) -> ModelShape:
    """The shape of the model in `path` (config.json and *.safetensors)."""
    config = read_config(path)
    num_layers = int(config["num_hidden_layers"])
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise ValueError(f"{path} holds no safetensors weights")
    layers = [0] * num_layers
    embed = head = 0
    has_head = False
    for file in files:
        for name, size in safetensors_sizes(file).items():
            match = _LAYER.search(name)
            if match is not None:
                index = int(match.group(1))
                if index < num_layers:  # extra layers (multi-token prediction) are dropped
                    layers[index] += size
            elif any(marker in name for marker in _EMBED):
                embed += size
            else:
                has_head = has_head or "lm_head" in name
                head += size
    tied = bool(config.get("tie_word_embeddings", not has_head)) and not has_head
    return ModelShape(model_id, tuple(layers), embed, head, tied)


def weight_layout(path: Path) -> WeightLayout:
    """Which file holds which tensor in the model in `path`, and every file's size."""
    config = read_config(path)
    sizes = {name: (path / name).stat().st_size for name in model_file_names(path)}
    weight_map = None
    if INDEX_FILE in sizes:
        weight_map = parse_weight_map((path / INDEX_FILE).read_bytes())
    tied = tied_embeddings(config, weight_map) if weight_map is not None else False
    return WeightLayout(sizes, weight_map, int(config["num_hidden_layers"]), tied)
