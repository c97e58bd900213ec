"""Builds the tiny random-weight model the test suite runs on.

A real mlx-lm llama (2 layers, hidden 64) saved with mlx-lm's own helpers, and a byte-level BPE
tokenizer trained here with `tokenizers` on a small text, with a ChatML chat template in
tokenizer_config.json. A few hundred KB, built in about a second, deterministic (fixed seed), so
greedy outputs are repeatable across runs.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_MODEL_ID = "salut-test/tiny-llama"

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

TINY_TOOL_MODEL_ID = "salut-test/tiny-llama-tools"

# A Qwen2.5-style template with tools: mlx-lm infers its `json_tools` parser from `<tool_call>`
# and `tool_call.name` in it. Tools go to a system block; assistant tool calls and tool results
# are printed back in the history.
TOOLS_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\n"
    "{%- if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}\n\n{% endif %}"
    "# Tools\n<tools>{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}\n</tools>\n"
    'Call a function with <tool_call>{"name": ..., "arguments": ...}</tool_call>'
    "<|im_end|>\n"
    "{%- elif messages[0]['role'] == 'system' %}"
    "<|im_start|>system\n{{ messages[0]['content'] }}<|im_end|>\n"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'system' and loop.first %}"
    "{%- elif message.role == 'assistant' and message.tool_calls %}"
    "<|im_start|>assistant\n{{ message.content or '' }}"
    "{%- for tc in message.tool_calls %}"
    "{%- set tool_call = tc.function if tc.function is defined else tc %}"
    '\n<tool_call>\n{"name": "{{ tool_call.name }}", "arguments": '
    "{{ tool_call.arguments | tojson }}}\n</tool_call>"
    "{%- endfor %}<|im_end|>\n"
    "{%- elif message.role == 'tool' %}"
    "<|im_start|>user\n<tool_response>\n{{ message.content }}\n</tool_response><|im_end|>\n"
    "{%- else %}"
    "<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "Salut turns the machines on a LAN into one private inference cluster.",
    "The quick brown fox jumps over the lazy dog. Hello world! How are you today?",
    "Distributed inference splits a model across several machines in a network.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2026. Punctuation: , . ; : ! ? ( ) [ ] { }",
    "def main():\n    print('hello')\n    return 0\n",
    "Explain distributed inference in one sentence. Tokens stream one by one to the client.",
]


def _train_tokenizer(path: Path, tools: bool = False) -> int:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        + (["<tool_call>", "</tool_call>"] if tools else []),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 20, trainer=trainer)
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": None,
                "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>",
                "unk_token": None,
                "model_max_length": 512,
                "chat_template": TOOLS_TEMPLATE if tools else CHATML_TEMPLATE,
                "clean_up_tokenization_spaces": False,
            },
            indent=2,
        )
    )
    (path / "special_tokens_map.json").write_text(
        json.dumps({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"})
    )
    return tok.get_vocab_size()


def build_tiny_model(
    path: Path,
    *,
    seed: int = 0,
    num_layers: int = 2,
    family: str = "llama",
    tools: bool = False,
    weight_files: int = 1,
    tied: bool = False,
) -> Path:
    """Create the tiny model in `path` (created if missing) and return `path`.

    `family` is "llama" (the default) or "qwen3" (same sizes, with qwen3's q/k norms). `tools`: a
    chat template with tool calling (mlx-lm's `json_tools` format) and its markers as tokens.
    `weight_files` > 1: the weights saved as a big model's are, in that many files by layer
    (`model-0000i-of-0000n.safetensors`: the embeddings in the first, the final norm and head
    in the last) with the index naming each tensor's file. `tied`: no head of its own, the
    embeddings serve as the head (as in many small models)."""
    import importlib

    import mlx.core as mx
    from mlx_lm.utils import save_config, save_model

    path.mkdir(parents=True, exist_ok=True)
    vocab = _train_tokenizer(path, tools)
    eos_id = json.loads((path / "tokenizer.json").read_text())["added_tokens"][2]["id"]
    config = {
        "model_type": family,
        "hidden_size": 64,
        "num_hidden_layers": num_layers,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5,
        "vocab_size": vocab,
        "max_position_embeddings": 512,
        "rope_theta": 10000.0,
        "tie_word_embeddings": tied,
        "eos_token_id": eos_id,
        "torch_dtype": "float32",
    }
    if family == "qwen3":
        config["head_dim"] = 16
    mx.random.seed(seed)
    arch = importlib.import_module(f"mlx_lm.models.{family}")
    model = arch.Model(arch.ModelArgs.from_dict(config))
    # Random init gives near-uniform logits; scale embeddings up so greedy picks are decisive
    # (stable across batch shapes) and sampled text differs clearly between seeds.
    model.model.embed_tokens.weight = model.model.embed_tokens.weight * 3.0
    mx.eval(model.parameters())
    save_model(path, model)
    save_config(config, config_path=path / "config.json")
    if weight_files > 1:
        split_weights(path, weight_files, num_layers)
    return path


def split_weights(path: Path, count: int, num_layers: int) -> None:
    """Re-save `path`'s weights in `count` files, consecutive layers in each, and its index."""
    import re

    import mlx.core as mx

    weights: dict = {}
    for file in sorted(path.glob("model*.safetensors")):
        weights.update(mx.load(str(file)))
        file.unlink()
    names = [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]

    def file_of(tensor: str) -> int:
        match = re.search(r"layers\.(\d+)\.", tensor)
        if match is not None:
            return int(match.group(1)) * count // num_layers
        return 0 if "embed_tokens" in tensor else count - 1

    parts: list[dict] = [{} for _ in names]
    for tensor, value in weights.items():
        parts[file_of(tensor)][tensor] = value
    for name, part in zip(names, parts, strict=True):
        mx.save_safetensors(str(path / name), part, metadata={"format": "mlx"})
    weight_map = {t: names[file_of(t)] for t in sorted(weights)}
    (path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2)
    )
