"""GET /metrics: a live node scraped after real requests, parsed with prometheus_client's parser."""

from __future__ import annotations

import aiohttp
import pytest
from openai import AsyncOpenAI, NotFoundError
from prometheus_client.parser import text_string_to_metric_families

from salut_tui.node import Node
from tests.test_openai_client import live_node

HELLO = [{"role": "user", "content": "Hello!"}]
KEY = "sk-metrics-test"


async def scrape(node: Node, key: str | None = None) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{node.port}/metrics", headers=headers) as response,
    ):
        return response.status, response.headers["Content-Type"], await response.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of an exposition (the parser validates it)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@pytest.fixture
async def node(tmp_path, tiny_model_path, tiny_model_id):
    node = await live_node(tmp_path, tiny_model_path, tiny_model_id)
    yield node
    await node.stop()


async def test_scrape_counts_what_was_served(node: Node, tiny_model_id: str) -> None:
    async with AsyncOpenAI(
        base_url=f"http://127.0.0.1:{node.port}/v1", api_key="unused", max_retries=0
    ) as client:
        usage = []
        for _ in range(2):
            done = await client.chat.completions.create(
                model=tiny_model_id, messages=HELLO, max_tokens=5, temperature=0
            )
            usage.append(done.usage)
        stream = await client.chat.completions.create(
            model=tiny_model_id,
            messages=HELLO,
            max_tokens=4,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        usage.append([c async for c in stream][-1].usage)
        text = await client.completions.create(
            model=tiny_model_id, prompt="Salut", max_tokens=3, temperature=0
        )
        with pytest.raises(NotFoundError):
            await client.chat.completions.create(model="no/such-model", messages=HELLO)

    status, content_type, body = await scrape(node)
    assert status == 200
    assert content_type.startswith("text/plain")
    got = samples(body)
    chat = (("model", tiny_model_id), ("route", "/v1/chat/completions"), ("status", "200"))
    assert got[("salut_requests_total", chat)] == 3
    completions = (("model", tiny_model_id), ("route", "/v1/completions"), ("status", "200"))
    assert got[("salut_requests_total", completions)] == 1
    # The unknown model id is not a label: clients cannot grow the series without bound.
    unknown = (("model", ""), ("route", "/v1/chat/completions"), ("status", "404"))
    assert got[("salut_requests_total", unknown)] == 1
    assert not any("no/such-model" in str(labels) for _, labels in got)

    model = (("model", tiny_model_id),)
    prompt_tokens = sum(u.prompt_tokens for u in usage) + text.usage.prompt_tokens
    completion_tokens = sum(u.completion_tokens for u in usage) + text.usage.completion_tokens
    assert got[("salut_prompt_tokens_total", model)] == prompt_tokens
    assert got[("salut_completion_tokens_total", model)] == completion_tokens == 5 + 5 + 4 + 3
    assert got[("salut_time_to_first_token_seconds_count", model)] == 4
    assert 0 < got[("salut_time_to_first_token_seconds_sum", model)] < 60
    assert got[("salut_decode_tokens_per_second_count", model)] == 4

    assert got[("salut_requests_in_flight", ())] == 0
    assert got[("salut_queue_depth", ())] == 0
    assert got[("salut_model_loaded", model)] == 1
    assert got[("salut_model_memory_bytes", model)] > 0
    # A solo node has no peers; every health is still reported, at 0.
    for health in ("ok", "connecting", "unreachable", "discovered", "unknown"):
        assert got[("salut_peers", (("health", health),))] == 0


async def test_each_node_has_its_own_registry(
    node: Node, tmp_path, tiny_model_path, tiny_model_id
) -> None:
    other = await live_node(tmp_path / "other", tiny_model_path, tiny_model_id)
    try:
        async with AsyncOpenAI(
            base_url=f"http://127.0.0.1:{node.port}/v1", api_key="unused", max_retries=0
        ) as client:
            await client.chat.completions.create(
                model=tiny_model_id, messages=HELLO, max_tokens=2, temperature=0
            )
        counted = samples((await scrape(node))[2])
        untouched = samples((await scrape(other))[2])
        model = (("model", tiny_model_id),)
        assert counted[("salut_completion_tokens_total", model)] == 2
        assert ("salut_completion_tokens_total", model) not in untouched
    finally:
        await other.stop()


async def test_metrics_need_the_api_key_when_one_is_set(
    tmp_path, tiny_model_path, tiny_model_id
) -> None:
    node = await live_node(tmp_path, tiny_model_path, tiny_model_id, api_key=KEY)
    try:
        status, _, body = await scrape(node)
        assert status == 401
        assert '"invalid_api_key"' in body
        assert (await scrape(node, "sk-wrong"))[0] == 401
        status, _, body = await scrape(node, KEY)
        assert status == 200
        # The refused scrapes were counted too (route label, no model).
        refused = (("model", ""), ("route", "/metrics"), ("status", "401"))
        assert samples(body)[("salut_requests_total", refused)] == 2
    finally:
        await node.stop()
