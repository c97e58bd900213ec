"""Shutdown: stop taking requests (503), let in-flight ones finish for a grace period, then end
what remains with an error, never a normal finish. In-process with a live node, and with a real
`salut serve` process receiving SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from salut_tui.node import Node
from salut_tui.shutdown import ShutdownGate, drain
from tests.helpers import free_port, wait_healthy
from tests.long_context import long_context_copy
from tests.test_adapters import parse_sse
from tests.test_openai_client import live_node

MODEL = "salut-test/long-context"
# Greedy on the long-context copy: runs for many seconds (the tiny model's 512-token context no
# longer ends it), so it is still running when a short grace period ends.
LONG = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Hello!"}],
    "max_tokens": 50000,
    "temperature": 0,
}
SHORT = {**LONG, "max_tokens": 20}


@pytest.fixture
async def node(tmp_path, tiny_model_path):
    path = long_context_copy(tiny_model_path, tmp_path / "long")
    node = await live_node(tmp_path, path, MODEL)
    yield node
    await node.stop()


def in_flight(node: Node):
    return lambda: node.stats().in_flight


async def test_gate_refuses_new_work_once_closed() -> None:
    gate = ShutdownGate()
    assert gate.refusal() is None
    assert await drain(gate, lambda: 0, grace=5.0) == 0  # nothing running: returns at once
    refusal = gate.refusal()
    assert refusal is not None and refusal.status == 503
    assert refusal.code == "server_shutting_down"


async def test_a_second_signal_cuts_the_grace_short() -> None:
    again = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_later(0.1, again.set)
    began = loop.time()
    assert await drain(ShutdownGate(), lambda: 2, grace=60.0, cut_short=again) == 2
    assert loop.time() - began < 30  # generous: it did not wait the 60 s grace


async def test_drain_lets_short_requests_finish_and_refuses_new_ones(node: Node) -> None:
    url = f"http://127.0.0.1:{node.port}/v1/chat/completions"
    async with aiohttp.ClientSession() as session:
        response = await session.post(url, json={**SHORT, "stream": True})
        await response.content.readuntil(b"\n\n")
        draining = asyncio.ensure_future(drain(node.gate, in_flight(node), grace=30.0))
        await asyncio.sleep(0)
        async with session.post(url, json=SHORT) as refused:
            assert refused.status == 503
            assert refused.headers["Retry-After"]
            assert (await refused.json())["error"]["code"] == "server_shutting_down"
        async with session.get(f"http://127.0.0.1:{node.port}/health") as health:
            assert (await health.json())["status"] == "shutting_down"
        events = parse_sse(await asyncio.wait_for(response.read(), timeout=30))
        assert await asyncio.wait_for(draining, timeout=30) == 0
    assert events[-1] == "[DONE]"
    assert events[-2]["choices"][0]["finish_reason"] == "length"  # finished in the grace period


async def test_after_the_grace_streams_end_with_an_error_event(node: Node) -> None:
    url = f"http://127.0.0.1:{node.port}/v1/chat/completions"
    async with aiohttp.ClientSession() as session:
        response = await session.post(url, json={**LONG, "stream": True})
        await response.content.readuntil(b"\n\n")
        assert await drain(node.gate, in_flight(node), grace=0.3) == 1
        stopping = asyncio.ensure_future(node.stop())
        events = parse_sse(await asyncio.wait_for(response.read(), timeout=20))
        await asyncio.wait_for(stopping, timeout=20)
    assert events[-1] == "[DONE]"
    assert events[-2]["error"]["code"] == "server_shutting_down"
    assert events[-2]["error"]["type"] == "server_error"
    assert all(e["choices"][0]["finish_reason"] is None for e in events[:-2])


async def test_after_the_grace_a_regular_request_gets_503(node: Node) -> None:
    url = f"http://127.0.0.1:{node.port}/v1/chat/completions"
    async with aiohttp.ClientSession() as session:
        pending = asyncio.ensure_future(session.post(url, json=LONG))
        while node.stats().in_flight == 0:
            await asyncio.sleep(0.01)
        assert await drain(node.gate, in_flight(node), grace=0.2) == 1
        await node.stop()
        async with await asyncio.wait_for(pending, timeout=20) as response:
            assert response.status == 503
            assert (await response.json())["error"]["code"] == "server_shutting_down"


def test_sigterm_drains_a_real_node(tmp_path: Path, tiny_model_path: Path) -> None:
    """SIGTERM: new requests get 503 at once, the running stream gets the grace period, then an
    error event and [DONE]; the process exits 0."""
    model = long_context_copy(tiny_model_path, tmp_path / "long")
    config = tmp_path / "salut.toml"
    config.write_text("shutdown_grace = 2.0\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "SALUT_CONFIG"}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    cmd = [sys.executable, "-m", "salut_tui", "serve", "--config", str(config)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--data-dir", str(tmp_path / "data")]
    cmd += ["--mode", "solo", "--model", str(model)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        health = wait_healthy(base, proc, models=[str(model)])
        body = {**LONG, "model": health["loaded_models"][0], "stream": True}
        lines: list[str] = []
        streaming = threading.Event()

        def read_stream() -> None:
            request = urllib.request.Request(
                base + "/v1/chat/completions",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                for raw in response:
                    if line := raw.decode().strip():
                        lines.append(line)
                    if len(lines) > 3:
                        streaming.set()

        reader = threading.Thread(target=read_stream)
        reader.start()
        assert streaming.wait(30), lines
        proc.send_signal(signal.SIGTERM)
        refused = None
        for _ in range(50):  # the signal is handled within a loop turn or two
            try:
                with urllib.request.urlopen(
                    urllib.request.Request(
                        base + "/v1/chat/completions",
                        data=json.dumps({**body, "stream": False, "max_tokens": 1}).encode(),
                        headers={"Content-Type": "application/json"},
                    ),
                    timeout=10,
                ):
                    pass
            except urllib.error.HTTPError as exc:
                refused = exc
                break
        assert refused is not None and refused.code == 503
        assert json.loads(refused.read())["error"]["code"] == "server_shutting_down"
        assert lines[-1] != "data: [DONE]"  # still streaming during the grace period
        reader.join(30)
        assert not reader.is_alive(), "the stream did not end after the grace period"
        assert proc.wait(timeout=30) == 0
        assert lines[-1] == "data: [DONE]"
        assert json.loads(lines[-2].removeprefix("data: "))["error"]["code"] == (
            "server_shutting_down"
        )
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
