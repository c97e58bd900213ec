"""Structured output (`response_format`): what a grammar costs per token, in one run.

(A) Grammar libraries side by side, without a model: for each tokenizer (the tiny test model's
    ~500 tokens, SmolLM2's 49k), the time to prepare a model (tokenizer view, once per model),
    to prepare a JSON Schema (compile, once per request), and
    the time per token to compute the mask of allowed tokens and advance, walking a valid
    instance token by token. llguidance (what Salut uses) against outlines-core. xgrammar is not
    measured: it imports torch, transformers and triton, which Salut does not install.
(B) Salut's engine end to end (a real Node in this process, `Node.generate`): decode ms/token of
    the same sampled request without and with `response_format` json_schema, and their ratio,
    on the tiny model and the default model (SmolLM2-135M, converted once into --data-dir).

    python bench/bench_structured.py [--data-dir /tmp/salut-bench] [--skip-default] [--runs 3]
                                     [--libraries-only]

Per-token decode time is (last token time - first token time) / (tokens - 1), as in
bench_engine.py; medians of --runs alternating runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "role": {"enum": ["admin", "user", "guest"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 8},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 30}, "zip": {"type": "string"}},
            "required": ["city", "zip"],
            "additionalProperties": False,
        },
        "active": {"type": "boolean"},
    },
    "required": ["name", "age", "role", "tags", "address", "active"],
    "additionalProperties": False,
}
INSTANCE = (
    '{"name": "Ada Lovelace of Salut", "age": 36, "role": "admin", '
    '"tags": ["math", "engines", "poetry", "notes"], '
    '"address": {"city": "London", "zip": "W1 2AB"}, "active": true}'
)


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


# ---- (A) libraries -------------------------------------------------------------------------
def bench_llguidance(tokenizer: Any, ids: list[int]) -> tuple[float, float, float]:
    import llguidance
    import llguidance.hf

    began = time.perf_counter()
    llt = llguidance.hf.from_tokenizer(tokenizer, eos_token=tokenizer.eos_token_id)
    setup = time.perf_counter() - began  # once per model
    began = time.perf_counter()
    grammar = llguidance.LLMatcher.grammar_from_json_schema(
        json.dumps(SCHEMA),
        defaults={"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "},
    )
    matcher = llguidance.LLMatcher(llt, grammar, log_level=0)
    prepare = time.perf_counter() - began
    steps = []
    for token in ids:
        t = time.perf_counter()
        matcher.compute_bitmask()
        ok = matcher.consume_token(token)
        steps.append(time.perf_counter() - t)
        assert ok, matcher.get_error()
    assert matcher.is_accepting()
    return setup, prepare, _median_us(steps)


def _byte_vocabulary(tokenizer: Any) -> dict[bytes, list[int]]:
    """Token strings of a byte-level BPE as raw bytes (outlines-core matches bytes)."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    decode = {chr(c): b for b, c in zip(printable, chars, strict=True)}
    vocab: dict[bytes, list[int]] = {}
    for text, token_id in tokenizer.get_vocab().items():
        if token_id == tokenizer.eos_token_id:
            continue
        try:
            raw = bytes(decode[c] for c in text)
        except KeyError:
            raw = text.encode()
        vocab.setdefault(raw, []).append(token_id)
    return vocab


def bench_outlines(tokenizer: Any, ids: list[int]) -> tuple[float, float, float]:
    import numpy as np
    from outlines_core import Guide, Index, Vocabulary
    from outlines_core.json_schema import build_regex_from_schema

    began = time.perf_counter()
    vocabulary = Vocabulary(tokenizer.eos_token_id, _byte_vocabulary(tokenizer))
    setup = time.perf_counter() - began  # once per model
    began = time.perf_counter()
    index = Index(build_regex_from_schema(json.dumps(SCHEMA)), vocabulary)
    guide = Guide(index)
    prepare = time.perf_counter() - began
    mask = np.zeros((len(tokenizer.get_vocab()) + 31) // 32, dtype=np.int32)
    steps = []
    for token in ids:
        t = time.perf_counter()
        guide.write_mask_into(mask.ctypes.data, mask.size, 4)
        guide.advance(token, return_tokens=False)
        steps.append(time.perf_counter() - t)
    assert guide.is_finished()
    return setup, prepare, _median_us(steps)


def bench_libraries(name: str, path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    ids = tokenizer.encode(INSTANCE, add_special_tokens=False)
    print(f"\n(A) {name}: vocabulary {len(tokenizer.get_vocab())}, walk of {len(ids)} tokens")
    print(
        f"{'library':<14} {'per model ms':>12} {'per schema ms':>14} {'mask+advance us/token':>22}"
    )
    for library, run in (("llguidance", bench_llguidance), ("outlines-core", bench_outlines)):
        setup, prepare, per_token = run(tokenizer, ids)
        print(
            f"{library:<14} {setup * 1e3:>12.1f} {prepare * 1e3:>14.1f} {per_token:>22.1f}",
            flush=True,
        )


# ---- (B) the engine --------------------------------------------------------------------------
async def _decode_ms(node: Any, model: str, constrained: bool, seed: int, max_tokens: int):
    from salut_tui.engine.constraint import JsonConstraint
    from salut_tui.engine.types import Finish, GenerationRequest, SamplingParams, Token

    request = GenerationRequest(
        model=model,
        messages=({"role": "user", "content": "Describe a person as JSON."},),
        sampling=SamplingParams(temperature=1.0, seed=seed, max_tokens=max_tokens),
        constraint=JsonConstraint.for_schema(SCHEMA) if constrained else None,
    )
    times: list[float] = []
    finish = None
    async for chunk in node.generate(request):
        if isinstance(chunk, Token):
            times.append(time.perf_counter())
        elif isinstance(chunk, Finish):
            finish = chunk
    assert finish is not None and len(times) > 2, finish
    return (times[-1] - times[0]) / (len(times) - 1) * 1e3, len(times), finish.reason


async def bench_engine(name: str, model: str, path: Path, runs: int, max_tokens: int) -> None:
    from salut_tui.config import Settings
    from salut_tui.node import Node

    with tempfile.TemporaryDirectory() as data:
        node = Node(
            Settings(
                models={model: str(path)}, mode="solo", port=0, host="127.0.0.1", data_dir=data
            )
        )
        await node.start(preload=[])
        await node.load_model(model)
        try:
            await _decode_ms(node, model, True, 0, 8)  # warm-up: grammar tokenizer built here
            plain, constrained = [], []
            for run in range(runs):
                plain.append(await _decode_ms(node, model, False, run, max_tokens))
                constrained.append(await _decode_ms(node, model, True, run, max_tokens))
        finally:
            await node.stop()
    p = statistics.median(ms for ms, _, _ in plain)
    c = statistics.median(ms for ms, _, _ in constrained)
    tokens = [n for _, n, _ in constrained]
    print(
        f"(B) {name:<8} unconstrained {p:7.2f} ms/token | json_schema {c:7.2f} ms/token "
        f"| ratio {c / p:5.2f} | constrained answers {tokens} tokens, "
        f"finish {[r for _, _, r in constrained]}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(Path(tempfile.gettempdir()) / "salut-bench"))
    parser.add_argument("--skip-default", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--libraries-only", action="store_true", help="part (A) only")
    args = parser.parse_args()

    from salut_tui.config import DEFAULT_MODEL, Settings
    from salut_tui.engine.default_model import ensure_default_model
    from tests.model_factory import TINY_MODEL_ID, build_tiny_model

    tiny = build_tiny_model(Path(tempfile.mkdtemp()) / "tiny")
    models = [("tiny", TINY_MODEL_ID, tiny)]
    if not args.skip_default:
        default = ensure_default_model(Settings(data_dir=args.data_dir))
        models.append(("default", DEFAULT_MODEL, default))
    for name, _, path in models:
        bench_libraries(name, path)
    print()
    for name, model_id, path in [] if args.libraries_only else models:
        asyncio.run(bench_engine(name, model_id, path, args.runs, args.max_tokens))


if __name__ == "__main__":
    main()
