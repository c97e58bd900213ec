"""A sharded model's runners against the same model in one process, in one run, side by side.

For each model (the tiny test model with 8 layers, then the default model unless
--skip-default), on runner subprocesses (`python -m salut_tui.shard.runner`) whose ring connects
directly on 127.0.0.1 (no relay, no peer link: the compute half of sharding alone):
  - "1 process": a world of one runner (the whole model, the same generation loop);
  - "2-rank pipeline": two runners, layers split in half;
  - "2-rank relayed": the same two runners with every ring connection carried by Salut's relays
    over a real encrypted peer link between two in-process nodes (as across machines), and the
    relay's tunnel frames per generated token.
Figures: single-stream decode tokens/s (median of --runs), aggregate tokens/s of --streams
concurrent greedy requests, and time to first token (single stream). Decode rate is
(tokens - 1) / (last token - first token), timed where the node would read the chunks.

    python bench/bench_shard.py [--max-tokens 64] [--runs 3] [--streams 4] [--skip-default]
                                [--data-dir DIR] [--blas same|fast]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from salut_tui.engine.types import Error, Finish, GenerationRequest, SamplingParams, Token  # noqa: E402
from salut_tui.shard.protocol import ChunkOut, Generate  # noqa: E402
from tests.shard_helpers import Cluster, RelayedRing  # noqa: E402

PROMPT = "Explain in a few sentences how a model can be split across several machines."


@dataclass
class Run:
    started: float
    first: float | None = None
    last: float | None = None
    tokens: int = 0

    @property
    def ttft(self) -> float:
        return (self.first or self.started) - self.started

    @property
    def decode_tps(self) -> float:
        if self.first is None or self.last is None or self.tokens < 2:
            return 0.0
        return (self.tokens - 1) / max(self.last - self.first, 1e-9)


def request(model_id: str, max_tokens: int, client: int = 0) -> GenerationRequest:
    suffix = f" (client {client})" if client else ""
    return GenerationRequest(
        model_id,
        messages=({"role": "user", "content": PROMPT + suffix},),
        sampling=SamplingParams(temperature=0.0, max_tokens=max_tokens),
    )


def stream(cluster: Cluster, requests: list[GenerationRequest]) -> tuple[list[Run], float]:
    """Send the requests together; per-request timings and the wall time of the burst."""
    began = time.perf_counter()
    runs = {r.request_id: Run(began) for r in requests}
    for r in requests:
        cluster.root.send(Generate(r))
    open_ids = set(runs)
    while open_ids:
        message = cluster.root.next_message(timeout=600)
        if message is None:
            raise RuntimeError("rank 0 ended: " + "".join(cluster.root.stderr[-20:]))
        if not isinstance(message, ChunkOut) or message.request_id not in runs:
            continue
        now, run = time.perf_counter(), runs[message.request_id]
        if isinstance(message.chunk, Token):
            run.tokens += 1
            run.first = run.first or now
            run.last = now
        elif isinstance(message.chunk, Finish | Error):
            open_ids.discard(message.request_id)
    return list(runs.values()), time.perf_counter() - began


def measure(
    path: Path, model_id: str, layers: int, world: int, args, tmp: Path, relayed: bool = False
) -> dict:
    ring = RelayedRing(tmp / "relays", world) if relayed else None
    hostfiles = ring.hostfiles if ring else None
    cluster = Cluster(
        tmp, path, model_id, world, layers, env=blas_env(args.blas), hostfiles=hostfiles
    )
    try:
        cluster.wait_ready(timeout=600)
        stream(cluster, [request(model_id, 8)])  # warm up
        frames_before = ring.frames() if ring else 0
        singles = [
            stream(cluster, [request(model_id, args.max_tokens)])[0][0] for _ in range(args.runs)
        ]
        frames = (ring.frames() - frames_before) if ring else 0
        burst, wall = stream(
            cluster, [request(model_id, args.max_tokens, i + 1) for i in range(args.streams)]
        )
        return {
            "decode": statistics.median(r.decode_tps for r in singles),
            "ttft": statistics.median(r.ttft for r in singles),
            "aggregate": sum(r.tokens for r in burst) / wall,
            # Relay frames per generated token over the single-stream runs (prefill included).
            "frames_per_token": frames / max(1, sum(r.tokens for r in singles)),
        }
    finally:
        cluster.close()
        if ring:
            ring.close()


def blas_env(kind: str) -> dict[str, str]:
    from salut_tui.blas import OPT_OUT_ENV

    return {OPT_OUT_ENV: "1"} if kind == "same" else {OPT_OUT_ENV: ""}


def default_model(data_dir: Path) -> Path:
    from salut_tui.config import Settings
    from salut_tui.engine.default_model import ensure_default_model

    return ensure_default_model(Settings(data_dir=str(data_dir)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--skip-default", action="store_true")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--blas", choices=("same", "fast"), default="same")
    args = parser.parse_args()
    from tests.model_factory import build_tiny_model

    with tempfile.TemporaryDirectory() as raw:
        tmp = Path(raw)
        models = [("tiny (8 layers)", build_tiny_model(tmp / "tiny", num_layers=8), "tiny", 8)]
        if not args.skip_default:
            path = default_model(args.data_dir or tmp / "data")
            models.append(("SmolLM2-135M", path, "HuggingFaceTB/SmolLM2-135M-Instruct", 30))
        print(
            f"| model | 1 process tok/s | 2-rank tok/s | ratio | 2-rank relayed tok/s | ratio "
            f"| relay frames/token | {args.streams}x 1 process | {args.streams}x 2-rank "
            f"| {args.streams}x relayed | TTFT 1 process / 2-rank / relayed |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, path, model_id, layers in models:
            one = measure(path, model_id, layers, 1, args, tmp / f"{model_id}-1")
            two = measure(path, model_id, layers, 2, args, tmp / f"{model_id}-2")
            rel = measure(path, model_id, layers, 2, args, tmp / f"{model_id}-r", relayed=True)
            print(
                f"| {name} | {one['decode']:.1f} | {two['decode']:.1f} | "
                f"{two['decode'] / one['decode']:.2f} | {rel['decode']:.1f} | "
                f"{rel['decode'] / one['decode']:.2f} | {rel['frames_per_token']:.2f} | "
                f"{one['aggregate']:.1f} | {two['aggregate']:.1f} | {rel['aggregate']:.1f} | "
                f"{one['ttft'] * 1000:.0f} / {two['ttft'] * 1000:.0f} / "
                f"{rel['ttft'] * 1000:.0f} ms |",
                flush=True,
            )


if __name__ == "__main__":
    main()
