"""Rebuild a Hugging Face `tokenizers` tokenizer from a GGUF file's tokenizer metadata.

A GGUF has no tokenizer.json: it stores the vocabulary (`tokenizer.ggml.tokens`), the BPE merges,
each token's type (normal, control, user-defined, ...), the special token ids, the chat template
and the *name* of the pre-tokenizer llama.cpp applies (`tokenizer.ggml.pre`). Byte-level BPE
vocabularies (`tokenizer.ggml.model == "gpt2"`: SmolLM, Llama 3, Qwen, StarCoder...) are rebuilt
here; the pre-tokenizer names map to the split rules llama.cpp uses for them (llama-vocab.cpp).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class GGUFImportError(ValueError):
    """A GGUF file that cannot be converted; the message says why."""


# llama.cpp token types (gguf.TokenType)
_CONTROL = 3
_USER_DEFINED = 4

# GPT-2's split rule, which `pre_tokenizers.ByteLevel(use_regex=True)` applies by itself.
_GPT2_NAMES = {"default", "gpt2", "gpt-2", "olmo", "jais", "poro-chat", "viking"}
# GPT-2's rule after splitting every digit on its own (llama.cpp adds a `\p{N}` rule first).
_DIGITS_THEN_GPT2_NAMES = {
    "smollm",
    "starcoder",
    "refact",
    "command-r",
    "codeshell",
    "exaone",
    "minerva",
}
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_REGEX_SPLITS = {
    "llama3": _LLAMA3_SPLIT,
    "llama-v3": _LLAMA3_SPLIT,
    "llama-bpe": _LLAMA3_SPLIT,
    "dbrx": _LLAMA3_SPLIT,
    "smaug-bpe": _LLAMA3_SPLIT,
    "falcon3": _LLAMA3_SPLIT,
    "qwen2": _QWEN2_SPLIT,
    "deepseek-r1-qwen": _QWEN2_SPLIT,
}


def _pre_tokenizer(name: str) -> Any:
    from tokenizers import Regex, pre_tokenizers

    if name in _GPT2_NAMES:
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if name in _DIGITS_THEN_GPT2_NAMES:
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
    if name in _REGEX_SPLITS:
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_REGEX_SPLITS[name]), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    known = sorted(_GPT2_NAMES | _DIGITS_THEN_GPT2_NAMES | set(_REGEX_SPLITS))
    raise GGUFImportError(f"GGUF pre-tokenizer {name!r} is not supported (supported: {known})")


def build_tokenizer(meta: dict[str, Any]) -> Any:
    """The `tokenizers.Tokenizer` the GGUF metadata describes (byte-level BPE only)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, processors

    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise GGUFImportError(
            f"GGUF tokenizer model {kind!r} is not supported (only byte-level BPE, 'gpt2')"
        )
    tokens: list[str] = list(meta["tokenizer.ggml.tokens"])
    types: list[int] = list(meta.get("tokenizer.ggml.token_type") or [1] * len(tokens))
    vocab: dict[str, int] = {}
    for index, token in enumerate(tokens):
        vocab.setdefault(token, index)  # a repeated spelling keeps its first id, as llama.cpp does
    # Byte-level tokens never contain a real space (it is spelled "Ġ"), so one split is exact.
    merges = [tuple(merge.split(" ", 1)) for merge in meta.get("tokenizer.ggml.merges", [])]

    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    tokenizer.pre_tokenizer = _pre_tokenizer(str(meta.get("tokenizer.ggml.pre", "default")))
    tokenizer.decoder = decoders.ByteLevel()
    # Control tokens (<|im_end|>...) and user-defined ones (<think>...) are matched whole in text.
    if len(types) != len(tokens):
        raise GGUFImportError(f"GGUF has {len(tokens)} tokens but {len(types)} token types")
    typed = list(zip(tokens, types, strict=True))
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, kind in typed if kind == _CONTROL]
    )
    tokenizer.add_tokens(
        [
            AddedToken(t, special=False, normalized=False)
            for t, kind in typed
            if kind == _USER_DEFINED
        ]
    )
    bos_id = meta.get("tokenizer.ggml.bos_token_id")
    if meta.get("tokenizer.ggml.add_bos_token") and bos_id is not None:
        bos = tokens[int(bos_id)]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, int(bos_id))]
        )
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return tokenizer


def _token(meta: dict[str, Any], key: str) -> str | None:
    token_id = meta.get(f"tokenizer.ggml.{key}")
    return None if token_id is None else str(meta["tokenizer.ggml.tokens"][int(token_id)])


def write_tokenizer(meta: dict[str, Any], out_dir: Path) -> None:
    """Write tokenizer.json, tokenizer_config.json (with the chat template) and
    special_tokens_map.json into `out_dir`, as transformers' fast tokenizer reads them."""
    build_tokenizer(meta).save(str(out_dir / "tokenizer.json"))
    special = {
        "bos_token": _token(meta, "bos_token_id"),
        "eos_token": _token(meta, "eos_token_id"),
        "unk_token": _token(meta, "unknown_token_id"),
        "pad_token": _token(meta, "padding_token_id"),
    }
    arch = meta.get("general.architecture")
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        "add_eos_token": bool(meta.get("tokenizer.ggml.add_eos_token", False)),
        "model_max_length": int(meta.get(f"{arch}.context_length", 4096)),
        "clean_up_tokenization_spaces": False,
    }
    if "tokenizer.chat_template" in meta:
        config["chat_template"] = meta["tokenizer.chat_template"]
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    present = {name: value for name, value in special.items() if value is not None}
    (out_dir / "special_tokens_map.json").write_text(
        json.dumps(present, indent=2), encoding="utf-8"
    )
