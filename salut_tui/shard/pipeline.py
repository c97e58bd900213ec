"""Pipeline and tensor splits of an mlx-lm model, for one rank of a ring group.

mlx-lm pipelines some families itself (qwen2, deepseek...: rank 0 runs the *last* layers there);
llama and qwen3 have only tensor parallelism (`shard()`). `PipelineStage` is the small adapter
those families need, usable for any model shaped `model.model.{embed_tokens, layers, norm}`:

- Rank order follows the layers: rank 0 (the coordinator, which receives the requests) runs the
  first layers and holds the token embeddings, the last rank runs the last layers and holds the
  final norm and the head. Hidden states go rank r -> r+1 with `send`/`recv` (ring neighbours).
- Only the local layers are ever read from disk: the model is built lazily (safetensors mapped,
  nothing read), the other layers are dropped, then the rest is evaluated.
- The model returns logits on every rank, so mlx-lm's `BatchGenerator` runs unchanged on every
  rank (SPMD): real logits on the last rank; elsewhere a lazy placeholder that depends on this
  rank's `send`, so evaluating it pushes the hidden state on. The token then reaches every rank
  through `TokenBroadcast`, a sampler wrapper: the last rank samples and the token goes on around
  the ring (`ringpass`: last -> 0 -> 1 ... one message per rank boundary, so a 2-rank step costs
  two ring messages in all: the hidden state out, the token back). So all ranks agree on every
  token even if their arithmetic differed, and stop conditions, batch filtering and KV caches
  stay in step.
- The KV cache covers the local layers only (`layers` / `make_cache`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten
from mlx_lm.models.base import create_attention_mask
from mlx_lm.models.cache import KVCache
from mlx_lm.utils import load_model, load_tokenizer

from salut_tui.shard.ringpass import pass_along
from salut_tui.transfer.manifest import INDEX_FILE, parse_weight_map

# Families whose decoder is `model.model.{embed_tokens, layers, norm}` with layers called as
# `layer(h, mask, cache)` and one causal mask for every layer (checked again at load time).
PIPELINE_FAMILIES = ("llama", "mistral", "qwen2", "qwen3")

Sampler = Callable[[mx.array], mx.array]


class PipelineStage(nn.Module):
    """Layers [start, end) of `model` on rank `rank` of `group` (ranks in layer order)."""

    def __init__(self, model: nn.Module, group: Any, start: int, end: int) -> None:
        super().__init__()
        decoder = model.model
        total = len(decoder.layers)
        if not 0 <= start < end <= total:
            raise ValueError(f"layers [{start}, {end}) of a {total}-layer model")
        self.rank: int = group.rank() if group is not None else 0
        self.size: int = group.size() if group is not None else 1
        self.group = group
        self.start, self.end = start, end
        self.first, self.last = self.rank == 0, self.rank == self.size - 1
        self.tied = not hasattr(model, "lm_head")
        # What arrives from the previous rank: the hidden state's width and dtype after layer
        # start-1, from a lazy trace through the model (a graph only, nothing is evaluated or
        # read). The sender sends exactly that array, so both sides agree.
        self.hidden_size, self.recv_dtype = _boundary(decoder, start)
        self.vocab_size = _vocab_size(model)
        decoder.layers = [None] * start + decoder.layers[start:end]
        if not self.first and not (self.last and self.tied):
            decoder.pop("embed_tokens")
        if not self.last:
            decoder.pop("norm")
            model.pop("lm_head", None)
        self.model = model

    @property
    def layers(self) -> list[Any]:
        return self.model.model.layers[self.start : self.end]

    def make_cache(self) -> list[Any]:
        return [KVCache() for _ in self.layers]

    def __call__(
        self, inputs: mx.array, cache: list[Any] | None = None, input_embeddings: Any = None
    ) -> mx.array:
        decoder = self.model.model
        batch, length = inputs.shape[0], inputs.shape[1]
        if self.first:
            h = decoder.embed_tokens(inputs)
        else:
            shape = (batch, length, self.hidden_size)
            h = mx.distributed.recv(shape, self.recv_dtype, self.rank - 1, group=self.group)
        layers = self.layers
        if cache is None:
            cache = [None] * len(layers)
        mask = create_attention_mask(h, cache[0])
        for layer, layer_cache in zip(layers, cache, strict=True):
            h = layer(h, mask, layer_cache)
        if self.last:
            h = decoder.norm(h)
            if self.tied:
                return decoder.embed_tokens.as_linear(h)
            return self.model.lm_head(h)
        sent = mx.distributed.send(h, self.rank + 1, group=self.group)
        if cache[-1] is not None:
            # Prefill evaluates only the caches: tie the send to them so it happens.
            cache[-1].keys = mx.depends(cache[-1].keys, sent)
        placeholder = mx.broadcast_to(mx.zeros((1, 1, 1)), (batch, length, self.vocab_size))
        return mx.depends(placeholder, sent)


class TokenBroadcast:
    """Wraps samplers so the token sampled on `source` is the token on every rank."""

    def __init__(self, group: Any, source: int) -> None:
        self.group = group
        self.source = source
        self.is_source = group is None or group.rank() == source

    def wrap(self, sampler: Sampler) -> Sampler:
        if self.group is None:
            return sampler
        group, source, is_source = self.group, self.source, self.is_source

        def broadcast(logprobs: mx.array) -> mx.array:
            token = sampler(logprobs).astype(mx.uint32) if is_source else None
            # `after`: the logprobs carry this rank's part of the step (its pipeline send),
            # which must leave before this rank waits for the token.
            return pass_along(token, logprobs.shape[:-1], mx.uint32, source, group, after=logprobs)

        return broadcast


@dataclass
class LoadedShard:
    model: nn.Module  # what BatchGenerator drives on this rank
    tokenizer: Any
    config: dict
    memory_bytes: int
    broadcast: TokenBroadcast


def load_shard(path: Path, group: Any, mode: str, layer_start: int, layer_end: int) -> LoadedShard:
    """This rank's part of the model in `path`, weights evaluated, ready for BatchGenerator.

    `path` may be a partial copy (`transfer.partial`: only the weight files of this rank's
    layers); the tensors it lacks get lazy placeholders that are never evaluated, and every
    tensor the stage keeps is checked to have come from disk."""
    partial = absent_weight_files(path)
    if partial and mode == "tensor":
        raise ValueError(
            f"a tensor split needs every weight file; this node lacks {sorted(partial)[0]}"
        )
    model, config = load_model(path, lazy=True, strict=not partial)
    on_disk = _fill_absent(model, path) if partial else None
    tokenizer = load_tokenizer(path, eos_token_ids=config.get("eos_token_id"))
    size = group.size() if group is not None else 1
    if mode == "tensor":
        if size > 1:
            check_tensor_support(model, config, size)
            model.shard(group)  # the family's own tensor parallelism
        stage: nn.Module = model
        source = 0
    else:
        check_pipeline_support(model, config)
        stage = PipelineStage(model, group, layer_start, layer_end)
        source = size - 1
        if on_disk is not None:
            _check_on_disk(model, on_disk, layer_start, layer_end)
    flat: list[tuple[str, mx.array]] = tree_flatten(stage.parameters())  # type: ignore[assignment]
    parameters = [a for _, a in flat]
    mx.eval(parameters)
    memory = sum(a.nbytes for a in parameters)
    return LoadedShard(stage, tokenizer, config, memory, TokenBroadcast(group, source))


def absent_weight_files(path: Path) -> frozenset[str]:
    """Weight files the model's index names that are not in `path` (a partial copy)."""
    try:
        weight_map = parse_weight_map((path / INDEX_FILE).read_bytes())
    except OSError:
        return frozenset()
    if weight_map is None:
        return frozenset()
    return frozenset(f for f in set(weight_map.values()) if not (path / f).is_file())


def _fill_absent(model: nn.Module, path: Path) -> frozenset[str]:
    """Give the tensors no file here holds a lazy zero placeholder in the model's own dtype
    (never evaluated: the stage drops them; the dtype keeps the lazy trace of `_boundary`
    true to the real model); returns the names that did come from disk."""
    weights: dict[str, mx.array] = {}
    for file in sorted(path.glob("model*.safetensors")):
        weights.update(mx.load(str(file)))  # type: ignore[arg-type]
    if hasattr(model, "sanitize"):
        weights = model.sanitize(weights)
    floats = Counter(v.dtype for v in weights.values() if mx.issubdtype(v.dtype, mx.floating))
    dtype = floats.most_common(1)[0][0] if floats else mx.float32
    flat: list[tuple[str, mx.array]] = tree_flatten(model.parameters())  # type: ignore[assignment]
    absent = [(k, mx.zeros(v.shape, dtype=dtype)) for k, v in flat if k not in weights]
    model.load_weights(absent, strict=False)
    return frozenset(weights)


def _check_on_disk(model: nn.Module, on_disk: frozenset[str], start: int, end: int) -> None:
    flat: list[tuple[str, mx.array]] = tree_flatten(model.parameters())  # type: ignore[assignment]
    lacking = sorted(k for k, _ in flat if k not in on_disk)
    if lacking:
        raise ValueError(
            f"this node's partial copy of the model lacks {lacking[0]} (needed for layers "
            f"[{start}, {end})): copy the files of these layers here again"
        )


def check_pipeline_support(model: nn.Module, config: dict) -> None:
    model_type = str(config.get("model_type", ""))
    decoder = getattr(model, "model", None)
    shaped = decoder is not None and all(
        hasattr(decoder, name) for name in ("embed_tokens", "layers", "norm")
    )
    sliding = any(getattr(layer, "use_sliding", False) for layer in getattr(decoder, "layers", []))
    if model_type not in PIPELINE_FAMILIES or not shaped or sliding:
        raise ValueError(
            f"pipeline sharding does not support the model type '{model_type}' "
            f"(supported: {', '.join(PIPELINE_FAMILIES)}); try mode 'tensor'"
        )


def check_tensor_support(model: nn.Module, config: dict, size: int) -> None:
    """The family's `shard()` splits heads and MLP columns evenly: they must divide."""
    if not hasattr(model, "shard"):
        raise ValueError(f"the model type '{config.get('model_type')}' has no tensor split")
    counts = {
        name: config.get(name)
        for name in ("num_attention_heads", "num_key_value_heads", "intermediate_size")
    }
    uneven = [f"{k}={v}" for k, v in counts.items() if isinstance(v, int) and v % size]
    if uneven:
        raise ValueError(
            f"a tensor split over {size} ranks needs {', '.join(uneven)} divisible by {size}; "
            "use mode 'pipeline'"
        )


def _boundary(decoder: Any, boundary: int) -> tuple[int, mx.Dtype]:
    """Width and dtype of the hidden state entering layer `boundary` (a lazy trace)."""
    h = decoder.embed_tokens(mx.zeros((1, 1), dtype=mx.int32))
    for layer in decoder.layers[:boundary]:
        h = layer(h, None, None)
    return int(h.shape[-1]), h.dtype


def _vocab_size(model: Any) -> int:
    args = getattr(model, "args", None)
    vocab = getattr(args, "vocab_size", None)
    if isinstance(vocab, int) and vocab > 0:
        return vocab
    return int(model.model.embed_tokens.weight.shape[0])
