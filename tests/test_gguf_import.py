"""import_gguf on GGUF files the tests write themselves from the tiny mlx-lm model.

The writer below does what llama.cpp's convert_hf_to_gguf.py does for a llama: llama.cpp tensor
names, Q/K rows permuted with llama.cpp's `permute()`, hyperparameters and the BPE vocabulary as
metadata, weights as F32, F16, Q8_0 or Q4_1. The converted model must then reproduce the original
model's logits and tokenization.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import gguf
import mlx.core as mx
import mlx_lm
import numpy as np
import pytest
from mlx.utils import tree_flatten

from salut_tui.engine.gguf_import import IMPORT_MARKER, import_gguf, unpermute_rows
from salut_tui.engine.gguf_tokenizer import GGUFImportError, build_tokenizer

Q = gguf.GGMLQuantizationType
PROMPT = "The quick brown fox jumps over the lazy dog. Numbers: 42 2026!"

_TO_GGUF = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_BLOCK_TO_GGUF = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def llama_cpp_permute(weights: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf.LlamaModel.permute, verbatim."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def gguf_name(name: str) -> str:
    if name in _TO_GGUF:
        return _TO_GGUF[name]
    _, _, layer, rest = name.split(".", 3)
    module, kind = rest.rsplit(".", 1)
    return f"blk.{layer}.{_BLOCK_TO_GGUF[module]}.{kind}"


def write_llama_gguf(
    model_dir: Path,
    out: Path,
    weights: dict[str, np.ndarray],
    qtype_for: dict[str, Q],
    extra: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write `weights` (mlx-lm names), `extra` tensors (GGUF names, F32) and the model's
    tokenizer as a llama GGUF file."""
    config = json.loads((model_dir / "config.json").read_text())
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    tok_config = json.loads((model_dir / "tokenizer_config.json").read_text())
    vocab = sorted(tok["model"]["vocab"].items(), key=lambda item: item[1])
    special = {added["id"] for added in tok["added_tokens"] if added["special"]}

    writer = gguf.GGUFWriter(out, arch="llama")
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_freq_base(config["rope_theta"])
    if "rope_scaling" in config:
        original = config["rope_scaling"]["original_max_position_embeddings"]
        writer.add_rope_scaling_orig_ctx_len(original)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([token for token, _ in vocab])
    writer.add_token_types([3 if index in special else 1 for _, index in vocab])
    writer.add_token_merges([" ".join(pair) for pair in tok["model"]["merges"]])
    writer.add_eos_token_id(config["eos_token_id"])
    writer.add_pad_token_id(0)
    writer.add_add_bos_token(False)
    writer.add_chat_template(tok_config["chat_template"])
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    for name, array in weights.items():
        if name.endswith("q_proj.weight"):
            array = llama_cpp_permute(array, heads, heads)
        elif name.endswith("k_proj.weight"):
            array = llama_cpp_permute(array, heads, kv_heads)
        qtype = qtype_for.get(name.rsplit(".", 2)[-2], Q.F32) if array.ndim == 2 else Q.F32
        if qtype == Q.F32:
            writer.add_tensor(gguf_name(name), array.astype(np.float32))
        elif qtype == Q.F16:
            writer.add_tensor(gguf_name(name), array.astype(np.float16))
        else:
            writer.add_tensor(gguf_name(name), gguf.quants.quantize(array, qtype), raw_dtype=qtype)
    for name, array in (extra or {}).items():
        writer.add_tensor(name, array.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def model_variant(
    source: Path, dest: Path, weights: dict[str, np.ndarray], **config_changes: object
) -> Path:
    """A copy of the tiny model with other weights and config values (the reference to match)."""
    dest.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (dest / name).write_bytes((source / name).read_bytes())
    config = json.loads((source / "config.json").read_text()) | config_changes
    (dest / "config.json").write_text(json.dumps(config))
    mx.save_safetensors(
        str(dest / "model.safetensors"), {k: mx.array(v) for k, v in weights.items()}
    )
    return dest


def load_weights(model_dir: Path) -> dict[str, np.ndarray]:
    model, _ = mlx_lm.load(str(model_dir))
    return {k: np.array(v) for k, v in tree_flatten(model.parameters())}


def logits(model_dir: Path, text: str = PROMPT) -> np.ndarray:
    model, tokenizer = mlx_lm.load(str(model_dir))
    return np.array(model(mx.array([tokenizer.encode(text)]))[0].astype(mx.float32))


@pytest.fixture(scope="module")
def f32_gguf(tiny_model_path: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf"
    return write_llama_gguf(tiny_model_path, out, load_weights(tiny_model_path), {})


def test_unpermute_undoes_llama_cpp_permute():
    rows = np.arange(6 * 16 * 3, dtype=np.float32).reshape(6 * 16, 3)
    for n_head, n_kv in ((6, 6), (6, 2)):
        permuted = llama_cpp_permute(rows, n_head, n_kv)
        assert not np.array_equal(permuted, rows)
        assert np.array_equal(unpermute_rows(permuted, n_kv), rows)


def test_f32_gguf_reproduces_the_original_logits(f32_gguf, tiny_model_path, tmp_path):
    reports: list[float] = []
    out = import_gguf(
        f32_gguf,
        tmp_path / "org" / "tiny",
        model_id="org/tiny",
        progress=lambda fraction, _message: reports.append(fraction),
    )
    assert out == tmp_path / "org" / "tiny"
    np.testing.assert_allclose(logits(out), logits(tiny_model_path), atol=1e-4, rtol=1e-4)
    assert reports[0] == 0.0 and reports[-1] == 1.0 and reports == sorted(reports)

    config = json.loads((out / "config.json").read_text())
    original = json.loads((tiny_model_path / "config.json").read_text())
    for key in (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "intermediate_size",
        "rope_theta",
        "vocab_size",
        "eos_token_id",
    ):
        assert config[key] == original[key], key
    assert config["tie_word_embeddings"] is False
    assert json.loads((out / IMPORT_MARKER).read_text())["model_id"] == "org/tiny"
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny"]  # no temp dirs left


def test_tokenizer_and_chat_template_match_the_original(f32_gguf, tiny_model_path, tmp_path):
    out = import_gguf(f32_gguf, tmp_path / "tiny", model_id="org/tiny")
    _, ours = mlx_lm.load(str(out))
    _, original = mlx_lm.load(str(tiny_model_path))
    for text in (
        PROMPT,
        "def main():\n    print('hello')",
        "<|im_start|>user\nSalut!<|im_end|>",
        "  é ü 中",
    ):
        assert ours.encode(text) == original.encode(text), text
        assert ours.decode(ours.encode(text)) == original.decode(original.encode(text))
    messages = [{"role": "user", "content": "Explain distributed inference."}]
    assert ours.apply_chat_template(
        messages, add_generation_prompt=True
    ) == original.apply_chat_template(messages, add_generation_prompt=True)
    assert ours.eos_token_ids == original.eos_token_ids
    assert ours.eos_token == "<|im_end|>"


def test_quantized_tied_gguf_stays_close_to_the_original(tiny_model_path, tmp_path):
    """Q8_0 attention, Q4_1 feed-forward (as in SmolLM2's file), F16 embedding, tied output."""
    weights = load_weights(tiny_model_path)
    weights.pop("lm_head.weight")
    tied_dir = model_variant(tiny_model_path, tmp_path / "tied", weights, tie_word_embeddings=True)

    qtypes = {
        "q_proj": Q.Q8_0,
        "k_proj": Q.Q8_0,
        "v_proj": Q.Q8_0,
        "o_proj": Q.Q8_0,
        "gate_proj": Q.Q4_1,
        "up_proj": Q.Q4_1,
        "down_proj": Q.Q4_1,
        "embed_tokens": Q.F16,
    }
    source = write_llama_gguf(tied_dir, tmp_path / "tiny-q.gguf", weights, qtypes)
    out = import_gguf(source, tmp_path / "tiny-q", model_id="org/tiny-q", dtype="bfloat16")

    config = json.loads((out / "config.json").read_text())
    assert config["tie_word_embeddings"] is True and config["torch_dtype"] == "bfloat16"
    model, _ = mlx_lm.load(str(out))
    assert model.model.embed_tokens.weight.dtype == mx.bfloat16
    ours, reference = logits(out), logits(tied_dir)
    # 4-bit weights and bfloat16 move logits a little, never the picture: the scale of the
    # error is a few percent of the logit range and the greedy choice agrees almost everywhere.
    assert np.abs(ours - reference).max() < 0.05 * np.abs(reference).max()
    assert (ours.argmax(-1) == reference.argmax(-1)).mean() >= 0.9


def llama_cpp_rope_factors(scaling: dict[str, float], base: float, dim: int) -> np.ndarray:
    """llama.cpp's LlamaModel.generate_extra_tensors: the rope_freqs of a Llama 3.1 file."""
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_context_len = scaling["original_max_position_embeddings"]
    factors = []
    for freq in 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim)):
        wavelen = 2 * math.pi / freq
        if wavelen < old_context_len / high:
            factors.append(1)
        elif wavelen > old_context_len / low:
            factors.append(factor)
        else:
            smooth = (old_context_len / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def test_llama3_rope_scaling_is_recovered_from_rope_freqs(tiny_model_path, tmp_path):
    scaling = {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 256,
    }
    weights = load_weights(tiny_model_path)
    reference = model_variant(tiny_model_path, tmp_path / "llama3", weights, rope_scaling=scaling)
    config = json.loads((reference / "config.json").read_text())
    dim = config["hidden_size"] // config["num_attention_heads"]
    factors = llama_cpp_rope_factors(scaling, config["rope_theta"], dim)
    assert sorted(set(factors.round(3))) != [1.0, 8.0]  # the tiny model has a smoothed band too
    source = write_llama_gguf(
        reference, tmp_path / "llama3.gguf", weights, {}, extra={"rope_freqs.weight": factors}
    )
    out = import_gguf(source, tmp_path / "out", model_id="org/llama3")
    assert json.loads((out / "config.json").read_text())["rope_scaling"] == scaling
    text = PROMPT * 3
    np.testing.assert_allclose(logits(out, text), logits(reference, text), atol=1e-4, rtol=1e-4)
    # and the scaling matters here: the unscaled model answers differently
    assert np.abs(logits(tiny_model_path, text) - logits(reference, text)).max() > 1e-2

    with pytest.raises(GGUFImportError, match="RoPE scaling rule"):
        bent = factors.copy()
        bent[-2] += 0.5
        bad = write_llama_gguf(
            reference, tmp_path / "bad.gguf", weights, {}, extra={"rope_freqs.weight": bent}
        )
        import_gguf(bad, tmp_path / "bad", model_id="org/bad")


def test_reimport_replaces_the_previous_conversion(f32_gguf, tmp_path):
    out = tmp_path / "tiny"
    import_gguf(f32_gguf, out, model_id="org/tiny", dtype="float16")
    import_gguf(f32_gguf, out, model_id="org/tiny", dtype="float32")
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "float32"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]


def test_smollm_pre_tokenizer_splits_digits_one_by_one(tiny_model_path):
    tok = json.loads((tiny_model_path / "tokenizer.json").read_text())
    vocab = sorted(tok["model"]["vocab"].items(), key=lambda item: item[1])
    meta = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.tokens": [token for token, _ in vocab],
        "tokenizer.ggml.merges": [" ".join(pair) for pair in tok["model"]["merges"]],
    }
    default = build_tokenizer(meta | {"tokenizer.ggml.pre": "default"})
    smollm = build_tokenizer(meta | {"tokenizer.ggml.pre": "smollm"})
    assert default.encode("in 2026").tokens == ["in", "Ġ2026"]  # the trained vocab merged it
    assert smollm.encode("in 2026").tokens == ["in", "Ġ", "2", "0", "2", "6"]
    with pytest.raises(GGUFImportError, match="pre-tokenizer 'made-up'"):
        build_tokenizer(meta | {"tokenizer.ggml.pre": "made-up"})


def test_unsupported_architecture_is_a_clear_error(tmp_path):
    writer = gguf.GGUFWriter(tmp_path / "falcon.gguf", arch="falcon")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(GGUFImportError, match="architecture 'falcon'"):
        import_gguf(tmp_path / "falcon.gguf", tmp_path / "out", model_id="org/falcon")
    assert not (tmp_path / "out").exists()


def test_not_a_gguf_file_is_a_clear_error(tmp_path):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(GGUFImportError, match="not a readable GGUF"):
        import_gguf(bogus, tmp_path / "out", model_id="org/bogus")
