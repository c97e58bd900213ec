"""The curl examples of the API contract (salut-api.txt), run with curl against a live node.

The commands are copied verbatim from the contract; only the port (a free one instead of 7258),
the model id (the tiny test model) and `python` (this interpreter) are substituted.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys

import pytest

from salut_tui.node import Node
from tests.test_adapters import parse_sse
from tests.test_openai_client import live_node

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl command")

CONTRACT_MODEL = "mlx-community/Qwen3-8B-MLX-4bit"

LIST_MODELS = "curl http://localhost:7258/v1/models"

CHAT_REGULAR = """curl http://localhost:7258/v1/chat/completions \\
  -H "Content-Type: application/json" \\
  -d '{
    "model": "mlx-community/Qwen3-8B-MLX-4bit",
    "messages": [{"role": "user", "content": "Explain distributed inference in one sentence."}],
    "max_tokens": 100
  }'"""

CHAT_STREAMING = """curl http://localhost:7258/v1/chat/completions \\
  -H "Content-Type: application/json" \\
  -d '{
    "model": "mlx-community/Qwen3-8B-MLX-4bit",
    "messages": [{"role": "user", "content": "Hello!"}],
    "stream": true
  }'"""

ONE_SHOT = """curl -s http://localhost:7258/v1/chat/completions \\
  -H "Content-Type: application/json" \\
  -d '{"model":"mlx-community/Qwen3-8B-MLX-4bit","messages":[{"role":"user","content":"Hi"}]}' \\
  | python -m json.tool"""

ONE_SHOT_STREAMING = """curl -N http://localhost:7258/v1/chat/completions \\
  -H "Content-Type: application/json" \\
  -d '{"model":"mlx-community/Qwen3-8B-MLX-4bit","messages":[{"role":"user","content":"Hi"}],"stream":true}'"""

CLUSTER = "curl http://localhost:7258/v1/cluster"


@pytest.fixture
async def node(tmp_path, tiny_model_path, tiny_model_id):
    node = await live_node(tmp_path, tiny_model_path, tiny_model_id)
    # The examples give no max_tokens (or 100); a small default keeps random-weight output short.
    node.settings.default_max_tokens = 24
    yield node
    await node.stop()


async def run_example(command: str, node: Node, model_id: str) -> str:
    command = (
        command.replace("localhost:7258", f"localhost:{node.port}")
        .replace(CONTRACT_MODEL, model_id)
        .replace("| python ", f"| {sys.executable} ")
    )
    proc = await asyncio.create_subprocess_shell(
        command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    return out.decode("utf-8")


async def test_list_models(node: Node, tiny_model_id: str) -> None:
    body = json.loads(await run_example(LIST_MODELS, node, tiny_model_id))
    assert body["object"] == "list"
    entry = next(m for m in body["data"] if m["id"] == tiny_model_id)
    assert {"id", "object", "owned_by"} <= set(entry)
    assert entry["object"] == "model" and entry["owned_by"] == "local"


@pytest.mark.parametrize("command", [CHAT_REGULAR, ONE_SHOT])
async def test_regular_examples(node: Node, tiny_model_id: str, command: str) -> None:
    body = json.loads(await run_example(command, node, tiny_model_id))
    assert body["object"] == "chat.completion"
    assert body["model"] == tiny_model_id
    message = body["choices"][0]["message"]
    assert message["role"] == "assistant" and isinstance(message["content"], str)
    assert body["choices"][0]["finish_reason"] in {"stop", "length"}
    assert body["usage"]["total_tokens"] == (
        body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    )


@pytest.mark.parametrize("command", [CHAT_STREAMING, ONE_SHOT_STREAMING])
async def test_streaming_examples(node: Node, tiny_model_id: str, command: str) -> None:
    events = parse_sse((await run_example(command, node, tiny_model_id)).encode("utf-8"))
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] in {"stop", "length"}


async def test_cluster_info(node: Node, tiny_model_id: str) -> None:
    body = json.loads(await run_example(CLUSTER, node, tiny_model_id))
    me = body["node"]
    assert {"health", "vram_total", "vram_free", "loaded_models"} <= set(me)
    assert me["loaded_models"] == [tiny_model_id]
    assert isinstance(body["peers"], list)
