"""Prefill and decode tokens/s of one model under each BLAS MLX can use on Linux, in one run.

Each BLAS gets a fresh interpreter (LD_PRELOAD only acts at process start): the stock wheel's
bundled reference BLAS, OpenBLAS and MKL when installed. Every run loads the same model (the
default model, converted on first use, unless --model is given), uses the same prompt, dtype and
greedy decoding; only the BLAS differs. The outputs are compared too: a BLAS that changes the
greedy tokens is reported.

    python bench/bench_blas.py [--model DIR] [--prompt-tokens 241] [--decode-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from salut_tui.blas import OPT_OUT_ENV, blas_kind, find_fast_blas, installed_fast_blas  # noqa: E402

_TEXT = (
    "Salut turns the machines on a local network into one private inference cluster. Each node "
    "serves the models it holds through an OpenAI-compatible API, discovers its peers, and "
    "forwards requests to whichever machine has the model loaded. "
)


def measure(model_dir: str, prompt_tokens: int, decode_tokens: int) -> dict[str, Any]:
    """Run in the child: time one prefill and a greedy decode with mlx-lm's generate_step."""
    import mlx.core as mx
    import mlx_lm
    from mlx_lm.generate import generate_step

    from salut_tui.blas import detect_active_blas

    model, tokenizer = mlx_lm.load(model_dir)[:2]
    ids = tokenizer.encode(_TEXT * (prompt_tokens // 20 + 1))[:prompt_tokens]
    prompt = mx.array(ids)

    def run(max_tokens: int) -> tuple[float, float, list[int]]:
        start = time.perf_counter()
        tokens: list[int] = []
        first = start
        for token, _ in generate_step(prompt, model, max_tokens=max_tokens):
            tokens.append(int(token))
            if len(tokens) == 1:
                first = time.perf_counter()
        return first - start, time.perf_counter() - first, tokens

    run(4)  # warm up: first-call allocation and kernel setup
    prefill_s, decode_s, tokens = run(decode_tokens + 1)
    return {
        "blas": detect_active_blas(),
        "prefill_tps": len(ids) / prefill_s,
        "decode_tps": (len(tokens) - 1) / decode_s,
        "tokens": tokens,
    }


def run_child(model_dir: str, preload: Path | None, args: argparse.Namespace) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env[OPT_OUT_ENV] = "1"  # the child must not re-exec itself onto another BLAS
    if preload is not None:
        env["LD_PRELOAD"] = str(preload)
    command = [
        sys.executable,
        __file__,
        "--child",
        model_dir,
        "--prompt-tokens",
        str(args.prompt_tokens),
        "--decode-tokens",
        str(args.decode_tokens),
    ]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=1800, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="mlx-lm model directory (default: the default model)")
    parser.add_argument("--prompt-tokens", type=int, default=241)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--child", metavar="MODEL_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.prompt_tokens, args.decode_tokens)))
        return

    model_dir = args.model
    if model_dir is None:
        from salut_tui.config import find_config, load_settings
        from salut_tui.engine.default_model import ensure_default_model

        model_dir = str(ensure_default_model(load_settings(find_config())))
    installed = installed_fast_blas()
    configs: dict[str, Path | None] = {"stock (mlx-cpu wheel)": None}
    for kind in ("openblas", "mkl"):
        if kind in installed:
            configs[kind] = installed[kind]
        else:
            print(f"{kind:24} not installed, skipped")
    results = {label: run_child(model_dir, preload, args) for label, preload in configs.items()}

    stock = results["stock (mlx-cpu wheel)"]
    print(
        f"\nmodel {model_dir}; prompt {args.prompt_tokens} tokens, decode {args.decode_tokens} tokens"
    )
    print(
        f"{'BLAS':24} {'prefill tok/s':>14} {'decode tok/s':>13} {'x prefill':>10} {'x decode':>9}  same tokens"
    )
    for label, result in results.items():
        print(
            f"{label:24} {result['prefill_tps']:14.1f} {result['decode_tps']:13.1f} "
            f"{result['prefill_tps'] / stock['prefill_tps']:10.2f} {result['decode_tps'] / stock['decode_tps']:9.2f}"
            f"  {result['tokens'] == stock['tokens']}   [{result['blas']}]"
        )
    shipped = find_fast_blas()
    chosen = next(
        (r for r in results.values() if shipped and str(blas_kind(str(shipped))) in str(r["blas"])),
        stock,
    )
    print(
        "\nlike-for-like: every row runs the same model, prompt, dtype and greedy decode; only the BLAS differs."
    )
    print(
        f"as shipped: `salut` on this machine runs on {chosen['blas']} "
        f"(prefill {chosen['prefill_tps']:.1f}, decode {chosen['decode_tps']:.1f} tok/s) vs the stock "
        f"mlx-cpu wheel as mlx-lm runs it ({stock['prefill_tps']:.1f} / {stock['decode_tps']:.1f})"
    )


if __name__ == "__main__":
    main()
