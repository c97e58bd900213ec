"""A copy of the tiny test model that claims a long context window.

The tiny model's 512 tokens end any generation in about a second; tests that need a request to
outlast a grace period, or a prompt of hundreds of thousands of tokens to be tokenized, use this
copy (same weights and tokenizer, llama's RoPE has no fixed table, so only the config changes).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def long_context_copy(tiny_model_path: Path, dest: Path, context: int = 1_000_000) -> Path:
    shutil.copytree(tiny_model_path, dest)
    config_file = dest / "config.json"
    config = json.loads(config_file.read_text())
    config["max_position_embeddings"] = context
    config_file.write_text(json.dumps(config))
    return dest
