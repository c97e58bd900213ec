"""Proxy overhead: one streaming chat completion straight to node B vs through node A (A -> B
over the peer link), on loopback, with two real `salut serve` processes.

Reports the median time to first token (TTFT) and decode rate (tokens/s after the first token)
of each path, the TTFT added by the proxy and the rate ratio. Targets: ratio >= 0.95, added
TTFT <= 10 ms.

    python bench/bench_proxy.py [--runs 7] [--max-tokens 300] [--model-dir DIR --model-id ID]
                                [--prompt TEXT]

Without --model-dir it builds the test suite's tiny random llama (so the rate is high and any
per-token overhead shows up more than it would with a real model).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(
    url: str, body: dict | None = None, token: str | None = None, method: str | None = None
) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data else "GET"))
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Salut-Control", token)
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


class Proc:
    def __init__(self, root: Path, name: str, port: int, models: dict[str, str]) -> None:
        self.root, self.name, self.port = root / name, name, port
        self.root.mkdir(parents=True)
        config = self.root / "salut.toml"
        table = ", ".join(f'"{k}" = "{v}"' for k, v in models.items())
        # default_model names nothing: A must not spend the run loading the bundled model.
        config.write_text(
            f"models = {{ {table} }}\npreload = {json.dumps(list(models))}\n"
            'log_level = "WARNING"\ndefault_model = "bench/none"\n'
        )
        cmd = [sys.executable, "-m", "salut_tui", "serve", "--config", str(config), "--host", "127.0.0.1",
               "--port", str(port), "--data-dir", str(self.root / "data"), "--name", name]  # fmt: skip
        self.log = open(self.root / "node.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self) -> str:
        return (self.root / "data" / "control.token").read_text().split()[2]

    def wait(self, check, what: str, timeout: float = 90.0):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(
                    f"{self.name} exited:\n{(self.root / 'node.log').read_text()[-2000:]}"
                )
            try:
                result = check()
                if result:
                    return result
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        raise SystemExit(f"timed out waiting for {what}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)


def stream_once(
    base: str, model: str, max_tokens: int, prompt: str = "hello"
) -> tuple[float, float, int]:
    """(TTFT seconds, decode tokens/s, tokens) for one streaming request."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True}  # fmt: skip
    req = urllib.request.Request(f"{base}/v1/chat/completions", data=json.dumps(body).encode())
    req.add_header("Content-Type", "application/json")
    start = time.perf_counter()
    first = last = 0.0
    tokens = 0
    with urllib.request.urlopen(req, timeout=120) as resp:
        for raw in resp:
            line = raw.strip()
            if not line.startswith(b"data: {"):
                continue
            choices = json.loads(line[6:]).get("choices") or [{}]
            if not choices[0].get("delta", {}).get("content"):
                continue  # the opening role chunk, or text held back for a stop string
            last = time.perf_counter()
            first = first or last
            tokens += 1
    rate = (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0
    return first - start, rate, tokens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=300)
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--model-id", default="bench/model")
    parser.add_argument("--prompt", default="hello", help="user message (ask for a long answer)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="salut-bench-") as tmp_name:
        tmp = Path(tmp_name)
        model_dir = args.model_dir
        if model_dir is None:
            from tests.model_factory import build_tiny_model

            model_dir = build_tiny_model(tmp / "tiny")
        b = Proc(tmp, "B", free_port(), {args.model_id: str(model_dir)})
        a = Proc(tmp, "A", free_port(), {})
        try:
            for node in (a, b):
                node.wait(
                    lambda node=node: call(f"{node.base}/salut/hello"), f"{node.name} to start"
                )
            b.wait(
                lambda: any(m["loaded"] for m in call(f"{b.base}/v1/models")["data"]),
                "B to load the model",
            )
            code = call(f"{a.base}/salut/control/pair/code", {}, a.token())["code"]
            call(
                f"{b.base}/salut/control/pair/join",
                {"address": f"127.0.0.1:{a.port}", "code": code},
                b.token(),
            )
            a.wait(
                lambda: any(
                    p["health"] == "ok" and p["loaded_models"]
                    for p in call(f"{a.base}/v1/cluster")["peers"]
                ),
                "A to see B's model",
            )
            for base in (b.base, a.base):  # warm up both paths
                stream_once(base, args.model_id, 8)
            results: dict[str, list[tuple[float, float, int]]] = {"direct": [], "proxied": []}
            for _ in range(args.runs):  # interleaved, so load on this machine hits both alike
                results["direct"].append(
                    stream_once(b.base, args.model_id, args.max_tokens, args.prompt)
                )
                results["proxied"].append(
                    stream_once(a.base, args.model_id, args.max_tokens, args.prompt)
                )
        finally:
            a.stop()
            b.stop()
    ttft = {k: statistics.median(r[0] for r in v) for k, v in results.items()}
    rate = {k: statistics.median(r[1] for r in v) for k, v in results.items()}
    tokens = results["direct"][0][2]
    print(f"{args.runs} runs per path, {tokens} tokens each, loopback, median values")
    print(
        f"  direct to B:  TTFT {ttft['direct'] * 1000:7.2f} ms   decode {rate['direct']:8.1f} tok/s"
    )
    print(
        f"  through A:    TTFT {ttft['proxied'] * 1000:7.2f} ms   decode {rate['proxied']:8.1f} tok/s"
    )
    added = (ttft["proxied"] - ttft["direct"]) * 1000
    ratio = rate["proxied"] / rate["direct"] if rate["direct"] else 0.0
    print(f"  added TTFT {added:.2f} ms (target <= 10), rate ratio {ratio:.3f} (target >= 0.95)")
    return 0 if added <= 10 and ratio >= 0.95 else 1


if __name__ == "__main__":
    raise SystemExit(main())
