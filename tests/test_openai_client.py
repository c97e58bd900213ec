"""The real `openai` Python client against a live node on a free port."""

from __future__ import annotations

import asyncio

import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from salut_tui.config import Settings
from salut_tui.node import Node
from tests.helpers import openai_client

HELLO = [{"role": "user", "content": "Hello!"}]
KEY = "sk-openai-client-test"


async def live_node(tmp_path, model_path, model_id: str, api_key: str = "") -> Node:
    settings = Settings(
        models={model_id: str(model_path)},
        host="127.0.0.1",
        port=0,  # the OS picks a free port; node.port is the bound one
        data_dir=str(tmp_path),
        mode="solo",
        api_key=api_key,
    )
    node = Node(settings)
    await node.start(preload=[model_id])
    await node.load_model(model_id)  # joins the preload started above
    return node


@pytest.fixture
async def node(tmp_path, tiny_model_path, tiny_model_id):
    node = await live_node(tmp_path, tiny_model_path, tiny_model_id)
    yield node
    await node.stop()


@pytest.fixture
async def client(node: Node):
    async with openai_client(node.port) as client:
        yield client


async def test_regular_chat(client: AsyncOpenAI, tiny_model_id: str) -> None:
    response = await client.chat.completions.create(
        model=tiny_model_id, messages=HELLO, max_tokens=6, temperature=0
    )
    assert response.id.startswith("chatcmpl-")
    assert response.model == tiny_model_id
    assert response.choices[0].message.role == "assistant"
    assert response.choices[0].message.content
    assert response.choices[0].finish_reason == "length"
    assert response.usage is not None
    assert response.usage.completion_tokens == 6
    assert response.usage.total_tokens == response.usage.prompt_tokens + 6


async def test_streaming_chat(client: AsyncOpenAI, tiny_model_id: str) -> None:
    stream = await client.chat.completions.create(
        model=tiny_model_id, messages=HELLO, max_tokens=8, temperature=0, stream=True
    )
    chunks = [chunk async for chunk in stream]  # the client stops at data: [DONE]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    regular = await client.chat.completions.create(
        model=tiny_model_id, messages=HELLO, max_tokens=8, temperature=0
    )
    assert streamed == regular.choices[0].message.content


async def test_streaming_with_include_usage(client: AsyncOpenAI, tiny_model_id: str) -> None:
    stream = await client.chat.completions.create(
        model=tiny_model_id,
        messages=HELLO,
        max_tokens=4,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    assert all(c.usage is None for c in chunks[:-1])


async def test_text_completions(client: AsyncOpenAI, tiny_model_id: str) -> None:
    regular = await client.completions.create(
        model=tiny_model_id, prompt="def add(a, b):", max_tokens=5, temperature=0
    )
    assert regular.object == "text_completion"
    assert regular.usage is not None and regular.usage.completion_tokens == 5
    stream = await client.completions.create(
        model=tiny_model_id, prompt="def add(a, b):", max_tokens=5, temperature=0, stream=True
    )
    pieces = [chunk async for chunk in stream]
    assert "".join(p.choices[0].text for p in pieces) == regular.choices[0].text
    assert pieces[-1].choices[0].finish_reason == "length"


async def test_models(client: AsyncOpenAI, tiny_model_id: str) -> None:
    listed = [m async for m in client.models.list()]
    assert tiny_model_id in [m.id for m in listed]
    model = await client.models.retrieve(tiny_model_id)
    assert model.id == tiny_model_id and model.owned_by == "local"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("nobody/nothing")


async def test_unknown_model_is_not_found(client: AsyncOpenAI) -> None:
    for stream in (False, True):
        with pytest.raises(openai.NotFoundError) as info:
            await client.chat.completions.create(
                model="nobody/nothing", messages=HELLO, stream=stream
            )
        assert info.value.code == "model_not_found"
        assert info.value.param == "model"


async def test_bad_requests(client: AsyncOpenAI, tiny_model_id: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model=tiny_model_id, messages=HELLO, temperature=5)
    assert info.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model=tiny_model_id, messages=[])
    assert info.value.param == "messages"


async def test_api_key(tmp_path, tiny_model_path, tiny_model_id: str) -> None:
    node = await live_node(tmp_path, tiny_model_path, tiny_model_id, api_key=KEY)
    base_url = f"http://127.0.0.1:{node.port}/v1"
    try:
        async with AsyncOpenAI(base_url=base_url, api_key="wrong", max_retries=0) as bad:
            with pytest.raises(openai.AuthenticationError) as info:
                await bad.chat.completions.create(model=tiny_model_id, messages=HELLO)
            assert info.value.code == "invalid_api_key"
        async with AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0) as good:
            response = await good.chat.completions.create(
                model=tiny_model_id, messages=HELLO, max_tokens=2
            )
            assert response.choices[0].message.content is not None
    finally:
        await node.stop()


async def test_the_documented_python_example(node: Node, tiny_model_id: str) -> None:
    """salut-api.txt's `openai` example, verbatim but for base_url's port and the model id
    (the sync client, run in a thread so the node's loop keeps serving)."""

    def documented_example() -> str:
        client = OpenAI(
            base_url=f"http://localhost:{node.port}/v1",
            api_key="unused",  # or your configured key
        )
        printed = []
        response = client.chat.completions.create(
            model=tiny_model_id,
            messages=[{"role": "user", "content": "Hello!"}],
            stream=True,
            max_tokens=10,  # the contract's example leaves it to the default; keep the test short
        )
        for chunk in response:
            if chunk.choices[0].delta.content:
                printed.append(chunk.choices[0].delta.content)
        return "".join(printed)

    text = await asyncio.wait_for(asyncio.to_thread(documented_example), timeout=60)
    assert text
