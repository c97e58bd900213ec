"""Decode tokens/s with the terminal UI running, against `salut serve`, on the same model.

Both nodes are real processes started from the command line and run side by side; the UI one runs in a real
terminal (tmux, 120x40) showing the Streams screen, which redraws on every token batch. The same
streaming requests go to each through the `openai` client; decode rate is (tokens - 1) over the
time from the first to the last token. Target: ui / serve >= 0.95.

    python bench/bench_ui.py                    # the tiny test model (built on the fly)
    python bench/bench_ui.py --model PATH_OR_ID --requests 5 --max-tokens 200
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from openai import OpenAI

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"no node answered on port {port}")


def wait_model(client: OpenAI, timeout: float = 300.0) -> str:
    """The id of the first loaded model (preloading runs in the background)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        loaded = [m for m in client.models.list().data if getattr(m, "loaded", False)]
        if loaded:
            return loaded[0].id
        time.sleep(0.3)
    raise SystemExit("the model did not load")


def decode_rate(client: OpenAI, model: str, max_tokens: int) -> float:
    first = last = None
    tokens = 0
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Explain distributed inference in detail."}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            last = time.perf_counter()
            first = first or last
            tokens += 1
    if first is None or last is None or tokens < 2 or last == first:
        raise SystemExit("the model produced too few tokens to time")
    return (tokens - 1) / (last - first)


def node_args(work: Path, port: int, model: str) -> list[str]:
    work.mkdir(parents=True, exist_ok=True)
    config = work / "salut.toml"
    config.write_text('mode = "solo"\nnode_name = "bench"\n')
    return [
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(work / "data"),
        "--model",
        model,
    ]


def start_serve(work: Path, model: str) -> tuple[int, subprocess.Popen]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "salut_tui", "serve", *node_args(work, port, model)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return port, proc


def start_ui(work: Path, model: str) -> tuple[int, str]:
    """`salut` in tmux at 120x40; returns the port and the tmux session name."""
    port = free_port()
    session = f"salut-bench-{port}"
    command = " ".join([sys.executable, "-m", "salut_tui", *node_args(work, port, model)])
    subprocess.run(
        [
            "tmux",
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "120",
            "-y",
            "40",
            f"cd {ROOT} && {command}",
        ],
        check=True,
    )
    return port, session


def compare(serve_port: int, ui_port: int, requests: int, max_tokens: int) -> tuple[float, float]:
    """Alternate requests between the two nodes so that load from other processes on the
    machine hits both alike; median decode rate of each."""
    clients = {
        name: OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
        for name, port in (("serve", serve_port), ("ui", ui_port))
    }
    models = {name: wait_model(client) for name, client in clients.items()}
    for name, client in clients.items():
        decode_rate(client, models[name], 16)  # warm-up: first-call compilation and caches
    rates: dict[str, list[float]] = {"serve": [], "ui": []}
    for _ in range(requests):
        for name, client in clients.items():
            rates[name].append(decode_rate(client, models[name], max_tokens))
    return statistics.median(rates["serve"]), statistics.median(rates["ui"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model id or directory (default: the tiny test model)")
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = args.model
        if model is None:
            sys.path.insert(0, str(ROOT))
            from tests.model_factory import build_tiny_model

            model = str(build_tiny_model(work / "tiny-llama"))
        if shutil.which("tmux") is None:
            raise SystemExit("tmux is needed to run the UI in a real terminal")
        serve_port, serve_proc = start_serve(work / "serve", model)
        ui_port, session = start_ui(work / "ui", model)
        try:
            wait_healthy(serve_port)
            wait_healthy(ui_port)
            subprocess.run(["tmux", "send-keys", "-t", session, "3"], check=True)  # Streams
            serve, ui = compare(serve_port, ui_port, args.requests, args.max_tokens)
        finally:
            serve_proc.send_signal(signal.SIGINT)
            subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=False)
            serve_proc.wait(timeout=60)
            time.sleep(3)
            subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    print(f"model: {args.model or 'tiny test model'}")
    print(f"salut serve : {serve:8.1f} decode tok/s (median of {args.requests})")
    print(f"salut (UI)  : {ui:8.1f} decode tok/s")
    print(f"ratio       : {ui / serve:8.3f} (target >= 0.95)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
