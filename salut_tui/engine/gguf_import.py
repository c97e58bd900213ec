"""Convert a llama-family GGUF file (llama.cpp's format) into an mlx-lm model directory.

What a GGUF holds and what mlx-lm wants differ in four ways, each handled here:
  * hyperparameters are GGUF metadata (`llama.block_count`, ...), not a config.json;
  * weights are block-quantized (Q4_1, Q8_0, K-quants...): dequantized with the `gguf` package's
    reference code to the requested float dtype, one tensor at a time;
  * llama.cpp's converter permutes the rows of the Q and K projections of `llama` files (so that
    its RoPE can rotate interleaved pairs); the permutation is undone so mlx-lm's usual half-split
    RoPE applies, exactly as for the original Hugging Face weights;
  * the tokenizer is stored as metadata (tokens, merges, token types, pre-tokenizer name); a
    `tokenizers` byte-level BPE tokenizer is rebuilt from it (see gguf_tokenizer.py).
The result is written to a temporary directory beside `out_dir` and renamed into place, so a
reader never sees half a model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from salut_tui.engine.gguf_tokenizer import GGUFImportError, write_tokenizer

Progress = Callable[[float, str], None]

# Written last into a converted directory: says what it was made from (and that it is complete).
IMPORT_MARKER = "salut-import.json"
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class _ArchSpec:
    model_type: str  # the mlx-lm module that runs it
    permuted_qk: bool  # whether llama.cpp's converter permuted Q/K rows for this architecture


_ARCHITECTURES = {
    # Mistral and most llama derivatives are written as "llama" by llama.cpp.
    "llama": _ArchSpec("llama", permuted_qk=True),
    # Qwen2/3 use NEOX-style RoPE in llama.cpp, so their Q/K rows are stored unpermuted.
    "qwen2": _ArchSpec("qwen2", permuted_qk=False),
    "qwen3": _ArchSpec("qwen3", permuted_qk=False),
}

_GLOBAL_TENSORS = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_BLOCK_TENSORS = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_BLOCK_NAME = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")
_DTYPES = ("float32", "float16", "bfloat16")
_ROPE_FACTORS = "rope_freqs.weight"


def read_metadata(reader: Any) -> dict[str, Any]:
    """Every GGUF key/value as plain Python values (lists for arrays)."""
    return {name: field.contents() for name, field in reader.fields.items()}


def unpermute_rows(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Inverse of llama.cpp's `permute()` (convert_hf_to_gguf.py) for a Q/K weight or bias.

    llama.cpp reorders each head's rows from [first half | second half] to interleaved pairs;
    this puts them back: (heads, head_dim/2, 2, ...) -> (heads, 2, head_dim/2, ...).
    """
    shape = weight.shape
    return (
        weight.reshape(n_heads, shape[0] // n_heads // 2, 2, *shape[1:])
        .swapaxes(1, 2)
        .reshape(shape)
    )


def llama3_rope_scaling(
    factors: np.ndarray, base: float, head_dim: int, original_context: int
) -> dict[str, Any]:
    """Recover Llama 3.1-style RoPE scaling from llama.cpp's `rope_freqs` tensor.

    llama.cpp stores the per-frequency divisors it computed from (factor, low_freq_factor,
    high_freq_factor, original context), not those parameters. Every Llama 3.x uses low 1 and
    high 4, and the factor is the largest divisor; the divisors are recomputed from that guess
    (llama.cpp's formula) and must match the file, or the import is refused.
    """
    factor, low, high = float(factors.max()), 1.0, 4.0
    wavelens = 2 * np.pi * base ** (np.arange(0, head_dim, 2) / head_dim)
    smooth = (original_context / wavelens - low) / (high - low)
    expected = np.where(
        wavelens < original_context / high,
        1.0,
        np.where(wavelens > original_context / low, factor, 1 / ((1 - smooth) / factor + smooth)),
    )
    if expected.shape != factors.shape or not np.allclose(expected, factors, rtol=1e-3):
        raise GGUFImportError("GGUF rope_freqs do not follow Llama 3's RoPE scaling rule")
    return {
        "rope_type": "llama3",
        "factor": factor,
        "low_freq_factor": low,
        "high_freq_factor": high,
        "original_max_position_embeddings": original_context,
    }


def build_config(
    meta: dict[str, Any], tensor_names: set[str], dtype: str, rope_factors: np.ndarray | None = None
) -> dict[str, Any]:
    """mlx-lm config.json for the model the metadata describes (`rope_factors`: the values of
    the `rope_freqs.weight` tensor, when the file has one)."""
    arch = meta.get("general.architecture")
    if arch not in _ARCHITECTURES:
        raise GGUFImportError(
            f"GGUF architecture {arch!r} is not supported (supported: {sorted(_ARCHITECTURES)})"
        )

    def key(name: str, default: Any = None) -> Any:
        value = meta.get(f"{arch}.{name}", default)
        if value is None:
            raise GGUFImportError(f"GGUF metadata lacks {arch}.{name}")
        return value

    n_heads = int(key("attention.head_count"))
    hidden = int(key("embedding_length"))
    config: dict[str, Any] = {
        "model_type": _ARCHITECTURES[arch].model_type,
        "hidden_size": hidden,
        "num_hidden_layers": int(key("block_count")),
        "intermediate_size": int(key("feed_forward_length")),
        "num_attention_heads": n_heads,
        "num_key_value_heads": int(key("attention.head_count_kv", n_heads)),
        "head_dim": int(key("attention.key_length", hidden // n_heads)),
        "rms_norm_eps": float(key("attention.layer_norm_rms_epsilon")),
        "vocab_size": int(key("vocab_size", len(meta.get("tokenizer.ggml.tokens", [])))),
        "max_position_embeddings": int(key("context_length", 4096)),
        # mlx-lm's llama reads rope_theta from the top level of config.json.
        "rope_theta": float(key("rope.freq_base", 10000.0)),
        "tie_word_embeddings": "output.weight" not in tensor_names,
        "attention_bias": "blk.0.attn_q.bias" in tensor_names,
        "torch_dtype": dtype,
    }
    for token_key in ("bos_token_id", "eos_token_id"):
        if f"tokenizer.ggml.{token_key}" in meta:
            config[token_key] = int(meta[f"tokenizer.ggml.{token_key}"])
    scaling = meta.get(f"{arch}.rope.scaling.type")
    if scaling == "linear":
        config["rope_scaling"] = {"type": "linear", "factor": float(key("rope.scaling.factor"))}
    elif scaling not in (None, "none"):
        raise GGUFImportError(f"RoPE scaling {scaling!r} is not supported")
    if rope_factors is not None:
        original = int(key("rope.scaling.original_context_length", 8192))
        config["rope_scaling"] = llama3_rope_scaling(
            rope_factors, config["rope_theta"], config["head_dim"], original
        )
    return config


def mlx_name(gguf_name: str) -> str:
    """The mlx-lm (= Hugging Face) parameter name for a GGUF tensor name."""
    if gguf_name in _GLOBAL_TENSORS:
        return _GLOBAL_TENSORS[gguf_name]
    match = _BLOCK_NAME.match(gguf_name)
    if match and match.group(2) in _BLOCK_TENSORS:
        layer, part, kind = match.groups()
        return f"model.layers.{layer}.{_BLOCK_TENSORS[part]}.{kind}"
    raise GGUFImportError(f"GGUF tensor {gguf_name!r} has no counterpart in the mlx-lm model")


def convert_tensors(
    reader: Any, arch: str, config: dict[str, Any], dtype: str, progress: Progress
) -> dict[str, Any]:
    """Dequantize every tensor to `dtype` under its mlx-lm name, Q/K rows unpermuted."""
    import mlx.core as mx
    from gguf.quants import dequantize

    permuted = _ARCHITECTURES[arch].permuted_qk
    heads = {"attn_q": config["num_attention_heads"], "attn_k": config["num_key_value_heads"]}
    target = getattr(mx, dtype)
    weights: dict[str, Any] = {}
    total = len(reader.tensors)
    for index, tensor in enumerate(reader.tensors):
        if tensor.name == _ROPE_FACTORS:
            continue  # became rope_scaling in config.json
        values = np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
        part = tensor.name.split(".")[2] if tensor.name.startswith("blk.") else ""
        if permuted and part in heads:
            values = unpermute_rows(values, heads[part])
        converted = mx.array(values).astype(target)
        mx.eval(converted)  # materialize now so the float32 numpy copy can be freed
        weights[mlx_name(tensor.name)] = converted
        progress(0.05 + 0.8 * (index + 1) / total, f"converted {tensor.name}")
    return weights


def _build_model(config: dict[str, Any], weights: dict[str, Any]) -> Any:
    """Instantiate the mlx-lm model and load the weights strictly (names and shapes checked)."""
    from mlx_lm.utils import _get_classes

    model_class, args_class = _get_classes(config)
    model = model_class(args_class.from_dict(config))
    if hasattr(model, "sanitize"):
        weights = model.sanitize(weights)
    try:
        model.load_weights(list(weights.items()), strict=True)
    except ValueError as exc:
        raise GGUFImportError(
            f"GGUF tensors do not fit the {config['model_type']} model: {exc}"
        ) from exc
    return model


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Move a finished `tmp` to `out_dir`, replacing an older conversion there."""
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.replace(out_dir, old / out_dir.name)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def import_gguf(
    gguf_path: Path,
    out_dir: Path,
    *,
    model_id: str,
    dtype: str = "float32",
    progress: Progress | None = None,
) -> Path:
    """Convert `gguf_path` into an mlx-lm model directory at `out_dir` and return `out_dir`.

    `dtype` is the float type the weights are dequantized to (float32, float16 or bfloat16).
    `progress(fraction, message)` is called as the work advances. Raises GGUFImportError for a
    file that cannot be converted (unsupported architecture, tokenizer or tensor).
    """
    from gguf import GGUFReader
    from mlx_lm.utils import save_config, save_model

    if dtype not in _DTYPES:
        raise GGUFImportError(f"dtype must be one of {_DTYPES}, not {dtype!r}")
    report = progress or (lambda _fraction, _message: None)
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    report(0.0, f"reading {gguf_path.name}")
    try:
        reader = GGUFReader(gguf_path)
    except (ValueError, OSError) as exc:
        raise GGUFImportError(f"{gguf_path}: not a readable GGUF file: {exc}") from exc
    meta = read_metadata(reader)
    report(0.05, f"converting {len(reader.tensors)} tensors")
    factors = next((t.data for t in reader.tensors if t.name == _ROPE_FACTORS), None)
    rope_factors = None if factors is None else np.asarray(factors, dtype=np.float64)
    config = build_config(meta, {t.name for t in reader.tensors}, dtype, rope_factors)
    weights = convert_tensors(reader, meta["general.architecture"], config, dtype, report)
    model = _build_model(config, weights)
    del weights

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the model directory is an ordinary one
    try:
        report(0.88, "writing weights")
        save_model(tmp, model, donate_model=True)
        save_config(dict(config), config_path=tmp / "config.json")
        report(0.95, "writing tokenizer")
        write_tokenizer(meta, tmp)
        marker = {
            "format": _FORMAT_VERSION,
            "model_id": model_id,
            "source": str(gguf_path.resolve()),
            "source_size": gguf_path.stat().st_size,
            "dtype": dtype,
        }
        (tmp / IMPORT_MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report(1.0, f"imported {model_id}")
    return out_dir
