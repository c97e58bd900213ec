"""A client that goes away mid-generation stops the engine, not just the socket."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from salut_tui.events import StreamFinished
from salut_tui.node import Node
from tests.helpers import seconds_until
from tests.test_adapters import parse_sse
from tests.test_openai_client import live_node

# Greedy: random weights sampled at temperature 1 pick <|im_end|> early (vocab of 512); greedy
# runs to the context limit (~490 tokens, about a second).
ENDLESS = {
    "messages": [{"role": "user", "content": "Hello!"}],
    "max_tokens": 100000,
    "temperature": 0,
}


@pytest.fixture
async def node(tmp_path, tiny_model_path, tiny_model_id):
    node = await live_node(tmp_path, tiny_model_path, tiny_model_id)
    yield node
    await node.stop()


def engine_busy(node: Node) -> int:
    assert node.engine is not None
    return node.engine.in_flight + node.engine.queued


def finished_events(node: Node) -> list[StreamFinished]:
    seen: list[StreamFinished] = []
    node.events.subscribe(lambda e: seen.append(e) if isinstance(e, StreamFinished) else None)
    return seen


async def test_dropping_a_stream_cancels_the_generation(node: Node, tiny_model_id: str) -> None:
    finished = finished_events(node)
    url = f"http://127.0.0.1:{node.port}/v1/chat/completions"
    async with aiohttp.ClientSession() as session:
        response = await session.post(url, json={**ENDLESS, "model": tiny_model_id, "stream": True})
        for _ in range(5):
            await response.content.readuntil(b"\n\n")
        assert engine_busy(node) == 1
        response.close()  # drop the connection mid-stream
        stopped_after = await seconds_until(lambda: engine_busy(node) == 0, timeout=2.0)
    assert node.stats().in_flight == 0
    decoded = node.engine.tokens_decoded
    await asyncio.sleep(0.2)
    assert node.engine.tokens_decoded == decoded, "the engine kept decoding for nobody"
    assert [e.finish_reason for e in finished] == ["cancelled"]
    assert finished[0].completion_tokens < 1000
    assert stopped_after < 1.0


async def test_dropping_a_regular_request_cancels_the_generation(
    node: Node, tiny_model_id: str
) -> None:
    finished = finished_events(node)
    url = f"http://127.0.0.1:{node.port}/v1/chat/completions"
    async with aiohttp.ClientSession() as session:
        request = asyncio.ensure_future(session.post(url, json={**ENDLESS, "model": tiny_model_id}))
        await seconds_until(lambda: node.engine.in_flight == 1, timeout=5.0)
        request.cancel()  # the client gives up before any byte of the answer was sent
        stopped_after = await seconds_until(lambda: engine_busy(node) == 0, timeout=2.0)
    assert node.stats().in_flight == 0
    assert [e.finish_reason for e in finished] == ["cancelled"]
    assert stopped_after < 1.0


async def test_node_serves_normally_after_disconnects(node: Node, tiny_model_id: str) -> None:
    url = f"http://127.0.0.1:{node.port}/v1/chat/completions"
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            response = await session.post(
                url, json={**ENDLESS, "model": tiny_model_id, "stream": True}
            )
            await response.content.readuntil(b"\n\n")
            response.close()
        await seconds_until(lambda: engine_busy(node) == 0, timeout=2.0)
        body = {**ENDLESS, "model": tiny_model_id, "max_tokens": 3}
        async with session.post(url, json=body) as ok:
            assert ok.status == 200
            assert (await ok.json())["usage"]["completion_tokens"] == 3


async def test_stopping_the_node_ends_streams_with_an_error_event(
    node: Node, tiny_model_id: str
) -> None:
    url = f"http://127.0.0.1:{node.port}/v1/chat/completions"
    async with aiohttp.ClientSession() as session:
        response = await session.post(url, json={**ENDLESS, "model": tiny_model_id, "stream": True})
        await response.content.readuntil(b"\n\n")
        stopping = asyncio.ensure_future(node.stop())
        events = parse_sse(await asyncio.wait_for(response.read(), timeout=10))
        await asyncio.wait_for(stopping, timeout=10)
    assert events[-1] == "[DONE]"
    # A truncated answer must not read as finished: an OpenAI-shaped error event, then [DONE].
    assert events[-2]["error"]["code"] == "server_shutting_down"
    assert all(e["choices"][0]["finish_reason"] is None for e in events[:-2])
