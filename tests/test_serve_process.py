"""`salut serve` as a real process: starts, serves, and shuts down cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import free_port, wait_healthy


@pytest.fixture(params=["serve", "--headless"])
def serve_node(request: pytest.FixtureRequest, tmp_path: Path, tiny_model_path: Path):
    """A headless node: `salut serve`, and `salut --headless`, which must be the same thing."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "SALUT_CONFIG"}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")  # no stray user config
    cmd = [
        sys.executable,
        "-m",
        "salut_tui",
        request.param,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path / "data"),
        "--mode",
        "solo",
        "--model",
        str(tiny_model_path),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        health = wait_healthy(base, proc, models=[str(tiny_model_path)])
        yield proc, base, health
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_ends_in_flight_stream_properly(serve_node, tiny_model_path: Path, sig) -> None:
    proc, base, health = serve_node
    model_id = health["loaded_models"][0]
    assert model_id == str(
        tiny_model_path
    )  # a directory given with --model is served under its path
    lines: list[str] = []
    got_tokens = threading.Event()

    def stream() -> None:
        body = {
            "model": model_id,
            "messages": [{"role": "user", "content": "Hello!"}],
            "stream": True,
            "max_tokens": 100000,
            "temperature": 0,
        }
        req = urllib.request.Request(
            base + "/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            for raw in r:
                line = raw.decode().strip()
                if line:
                    lines.append(line)
                if len(lines) > 3:
                    got_tokens.set()

    reader = threading.Thread(target=stream)
    reader.start()
    assert got_tokens.wait(30), lines
    proc.send_signal(sig)
    reader.join(20)
    assert not reader.is_alive(), "stream did not end after the signal"
    assert proc.wait(timeout=20) == 0
    assert lines[-1] == "data: [DONE]"
    last = json.loads(lines[-2].removeprefix("data: "))
    assert last["choices"][0]["finish_reason"] is not None
    assert "Traceback" not in proc.stderr.read()


def test_logs_go_to_stderr_and_name_the_blas(serve_node) -> None:
    proc, _, _ = serve_node
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=20)
    err = proc.stderr.read()
    assert code == 0, err
    assert "BLAS in use:" in err
    assert "serving the API on http://127.0.0.1:" in err
    assert proc.stdout.read() == ""
