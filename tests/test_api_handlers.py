"""The API handlers with a real Node, its engine and the tiny model (pytest-aiohttp)."""

from __future__ import annotations

import asyncio

import pytest

from salut_tui.api.app import create_app
from salut_tui.config import Settings
from salut_tui.node import Node
from tests.helpers import until
from tests.test_adapters import parse_sse

HELLO = [{"role": "user", "content": "Hello!"}]


async def start_node(settings: Settings, model_id: str) -> Node:
    node = Node(settings)
    assert node.engine is not None
    await node.engine.start()
    await node.load_model(model_id)
    return node


@pytest.fixture
async def node(tmp_path, tiny_model_path, tiny_model_id):
    settings = Settings(
        models={tiny_model_id: str(tiny_model_path)}, data_dir=str(tmp_path), mode="solo"
    )
    node = await start_node(settings, tiny_model_id)
    yield node
    await node.stop()


@pytest.fixture
async def client(aiohttp_client, node):
    return await aiohttp_client(create_app(node))


async def post_sse(client, path: str, body: dict) -> tuple[object, list]:
    response = await client.post(path, json=body)
    assert response.status == 200, await response.text()
    return response, parse_sse(await response.read())


# ---- models, health, cluster ------------------------------------------------------------
async def test_models_lists_the_loaded_model(client, tiny_model_id: str) -> None:
    response = await client.get("/v1/models")
    body = await response.json()
    assert body["object"] == "list"
    entry = next(m for m in body["data"] if m["id"] == tiny_model_id)
    assert entry["object"] == "model"
    assert entry["owned_by"] == "local"
    assert entry["loaded"] is True
    assert isinstance(entry["created"], int)
    assert len(entry["nodes"]) == 1
    assert all(isinstance(m["loaded"], bool) for m in body["data"])


async def test_model_by_id_with_a_slash(client, tiny_model_id: str) -> None:
    response = await client.get(f"/v1/models/{tiny_model_id}")
    assert response.status == 200
    assert (await response.json())["id"] == tiny_model_id


async def test_unknown_model_by_id_is_404(client) -> None:
    response = await client.get("/v1/models/nobody/nothing")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "model_not_found"


async def test_health(client, node: Node, tiny_model_id: str) -> None:
    body = await (await client.get("/health")).json()
    assert body["status"] == "ok"
    assert body["version"] == node.version
    assert body["loaded_models"] == [tiny_model_id]
    assert body["requests_in_flight"] == 0


async def test_cluster_is_the_node_cluster_info(client, node: Node, tiny_model_id: str) -> None:
    body = await (await client.get("/v1/cluster")).json()
    assert body["object"] == "cluster"
    assert body["node"]["name"] == node.settings.display_name()
    assert body["node"]["loaded_models"] == [tiny_model_id]
    assert body["peers"] == []


# ---- chat completions -------------------------------------------------------------------
async def test_regular_chat_completion(client, tiny_model_id: str) -> None:
    body = {"model": tiny_model_id, "messages": HELLO, "max_tokens": 8, "temperature": 0}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status == 200
    data = await response.json()
    assert data["id"].startswith("chatcmpl-")
    assert data["object"] == "chat.completion"
    assert data["model"] == tiny_model_id
    choice = data["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str) and choice["message"]["content"]
    assert choice["finish_reason"] == "length"  # random weights never say <|im_end|> in 8 tokens
    usage = data["usage"]
    assert usage["completion_tokens"] == 8
    assert usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + 8


async def test_streaming_chat_matches_the_regular_answer(client, tiny_model_id: str) -> None:
    body = {"model": tiny_model_id, "messages": HELLO, "max_tokens": 12, "temperature": 0}
    regular = await (await client.post("/v1/chat/completions", json=body)).json()
    response, events = await post_sse(client, "/v1/chat/completions", {**body, "stream": True})
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert len({c["id"] for c in chunks}) == 1
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == regular["choices"][0]["message"]["content"]


async def test_stream_include_usage(client, tiny_model_id: str) -> None:
    body = {
        "model": tiny_model_id,
        "messages": HELLO,
        "max_tokens": 5,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    _, events = await post_sse(client, "/v1/chat/completions", body)
    assert events[-1] == "[DONE]"
    assert events[-2]["choices"] == []
    assert events[-2]["usage"]["completion_tokens"] == 5
    assert events[-3]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
@pytest.mark.parametrize("model", [None, "", "absent"])
async def test_a_request_without_a_model_is_a_400_not_the_default(
    client, node: Node, tiny_model_id: str, path: str, model
) -> None:
    node.settings.default_model = tiny_model_id  # loaded and ready: still not used
    body: dict = {"messages": HELLO, "prompt": "The sky is", "max_tokens": 2}
    if model != "absent":
        body["model"] = model
    response = await client.post(path, json=body)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["param"] == "model"
    assert error["type"] == "invalid_request_error"
    assert node.stats().in_flight == 0 and node.engine is not None
    assert node.engine.tokens_decoded == 0  # nothing was generated for it


async def test_list_content_and_extra_client_fields(client, tiny_model_id: str) -> None:
    body = {
        "model": tiny_model_id,
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        ],
        "max_completion_tokens": 3,
        "n": 1,
        "presence_penalty": 0.2,
        "frequency_penalty": 0.1,
        "user": "someone",
        # This model has no tool-call format: with tool_choice "none" the tools are left out
        # (with "auto" it is a 400 tools_not_supported, see tests/test_api_tools.py).
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "tool_choice": "none",
        "response_format": {"type": "text"},
        "logit_bias": {"1": 5},
        "logprobs": False,
        "seed": 3,
        "stop": ["\n\n"],
        "top_p": 0.9,
        "repetition_penalty": 1.1,
    }
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status == 200, await response.text()
    assert (await response.json())["usage"]["completion_tokens"] <= 3


async def test_same_seed_same_answer(client, tiny_model_id: str) -> None:
    body = {"model": tiny_model_id, "messages": HELLO, "max_tokens": 10, "seed": 7}
    first = await (await client.post("/v1/chat/completions", json=body)).json()
    second = await (await client.post("/v1/chat/completions", json=body)).json()
    assert first["choices"][0]["message"] == second["choices"][0]["message"]


# ---- text completions -------------------------------------------------------------------
async def test_regular_text_completion(client, tiny_model_id: str) -> None:
    body = {"model": tiny_model_id, "prompt": "def add(a, b):", "max_tokens": 6, "temperature": 0}
    data = await (await client.post("/v1/completions", json=body)).json()
    assert data["id"].startswith("cmpl-")
    assert data["object"] == "text_completion"
    assert isinstance(data["choices"][0]["text"], str)
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 6
    listed = await (
        await client.post("/v1/completions", json={**body, "prompt": ["def add(a, b):"]})
    ).json()
    assert listed["choices"][0]["text"] == data["choices"][0]["text"]


async def test_streaming_text_completion(client, tiny_model_id: str) -> None:
    body = {
        "model": tiny_model_id,
        "prompt": "x = ",
        "max_tokens": 4,
        "temperature": 0,
        "stream": True,
    }
    _, events = await post_sse(client, "/v1/completions", body)
    assert events[-1] == "[DONE]"
    assert all(e["object"] == "text_completion" for e in events[:-1])
    assert "delta" not in events[0]["choices"][0]
    assert events[-2]["choices"][0]["finish_reason"] == "length"


# ---- errors that come from the engine -----------------------------------------------------
@pytest.mark.parametrize("stream", [False, True])
async def test_unknown_model_is_404_even_when_streaming(client, stream: bool) -> None:
    body = {"model": "nobody/nothing", "messages": HELLO, "stream": stream}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status == 404
    assert response.content_type == "application/json"
    error = (await response.json())["error"]
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("stream", [False, True])
async def test_prompt_longer_than_the_context(client, tiny_model_id: str, stream: bool) -> None:
    long_text = " ".join(f"word{i}" for i in range(1500))  # the tiny model's context is 512
    body = {"model": tiny_model_id, "messages": [{"role": "user", "content": long_text}]}
    response = await client.post("/v1/chat/completions", json={**body, "stream": stream})
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "context_length_exceeded"
    assert error["param"] == "messages"


async def test_empty_prompt_is_400(client, tiny_model_id: str) -> None:
    response = await client.post("/v1/completions", json={"model": tiny_model_id, "prompt": ""})
    assert response.status == 400
    assert (await response.json())["error"]["param"] == "prompt"


async def test_full_queue_is_503_with_retry_after(
    aiohttp_client, tmp_path, tiny_model_path, tiny_model_id
) -> None:
    settings = Settings(
        models={tiny_model_id: str(tiny_model_path)},
        data_dir=str(tmp_path),
        mode="solo",
        max_batch_size=1,
        max_queue=1,
    )
    node = await start_node(settings, tiny_model_id)
    client = await aiohttp_client(create_app(node))
    endless = {
        "model": tiny_model_id,
        "messages": HELLO,
        "max_tokens": 100000,
        "temperature": 0,
        "stream": True,
    }
    try:
        running = await client.post("/v1/chat/completions", json=endless)
        await running.content.readuntil(b"\n\n")  # decoding has begun: it holds the one slot
        waiting = asyncio.ensure_future(client.post("/v1/chat/completions", json=endless))
        await until(lambda: node.engine.queued >= 1, 2.0, what="the second request queues")
        assert node.engine.queued == 1
        refused = await client.post("/v1/chat/completions", json={**endless, "stream": False})
        assert refused.status == 503
        assert refused.headers["Retry-After"] == "1"
        assert (await refused.json())["error"]["code"] == "queue_full"
        running.close()
        waiting.cancel()
    finally:
        await node.stop()


async def test_error_after_streaming_began_is_an_sse_error_event(
    client, node: Node, tiny_model_id: str
) -> None:
    body = {
        "model": tiny_model_id,
        "messages": HELLO,
        "max_tokens": 100000,
        "temperature": 0,
        "stream": True,
    }
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status == 200
    await response.content.readuntil(b"\n\n")
    await node.unload_model(tiny_model_id)  # the engine ends the stream with an Error
    events = parse_sse(await response.read())
    assert events[-1] == "[DONE]"
    assert events[-2]["error"]["code"] == "model_unloaded"
    assert set(events[-2]["error"]) == {"message", "type", "param", "code"}
