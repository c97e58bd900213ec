"""The official `openai` JS client against a live node: a tool loop, streaming, and a streamed
Responses API answer.

Needs node and npm; the client is installed from tests/js/package.json (and its lock file) into
tests/js/node_modules, as `.ci/run` does. Without node, npm or the package (no registry access),
the test skips and says why.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.test_api_tools import CALL, script
from tests.test_openai_client import live_node

JS_DIR = Path(__file__).parent / "js"


def _js_client() -> str | None:
    """Why the JS client cannot run here, or None when it can (installing it if needed)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node and npm are needed for the JS client tests"
    if not (JS_DIR / "node_modules" / "openai" / "package.json").exists():
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            return f"could not install the openai JS client (npm ci): {done.stderr[-300:]}"
    return None


async def test_js_client_tool_loop_and_streaming(
    tmp_path, tiny_tool_model_path, tiny_tool_model_id
) -> None:
    reason = await asyncio.to_thread(_js_client)
    if reason is not None:
        pytest.skip(reason)
    node = await live_node(tmp_path, tiny_tool_model_path, tiny_tool_model_id)
    try:
        answers = ("Let me look." + CALL, "Sunny, 21 degrees.", CALL, CALL, "x", "Bonjour!")
        for answer in answers:
            await script(node, tiny_tool_model_id, answer)
        process = await asyncio.create_subprocess_exec(
            "node",
            str(JS_DIR / "tool_loop.mjs"),
            cwd=JS_DIR,
            env={
                "PATH": shutil.which("node").rsplit("/", 1)[0],  # type: ignore[union-attr]
                "SALUT_BASE_URL": f"http://127.0.0.1:{node.port}/v1",
                "SALUT_MODEL": tiny_tool_model_id,
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0, stderr.decode()[-2000:]
    finally:
        await node.stop()
    out = json.loads(stdout)
    (call,) = out["first"]["calls"]
    assert out["first"]["finish"] == "tool_calls" and out["first"]["content"] == "Let me look."
    assert call["function"]["name"] == "get_weather" and call["id"].startswith("call_")
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert out["final"] == {"finish": "stop", "content": "Sunny, 21 degrees."}
    streamed = out["streamed"]["calls"]["0"]
    assert out["streamed"]["finish"] == "tool_calls" and streamed["name"] == "get_weather"
    assert json.loads(streamed["arguments"]) == {"city": "Paris"}
    (helper,) = out["helper"]["calls"]
    assert out["helper"]["finish"] == "tool_calls"
    assert json.loads(helper["function"]["arguments"]) == {"city": "Paris"}
    assert out["text"] == {"content": "x", "finish": "stop"}
    responses = out["responses"]
    assert responses["kinds"][0] == "response.created"
    assert responses["kinds"][-1] == "response.completed"
    assert "response.output_text.delta" in responses["kinds"]
    assert responses["deltas"] == responses["finalText"] == "Bonjour!"
