"""A huge prompt must not block the node: one that cannot fit is refused on its length before any
tokenizer sees it, and one that may fit is tokenized off the MLX thread, so other requests keep
streaming meanwhile."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from salut_tui.engine.prompt import (
    MAX_CHARS_PER_TOKEN,
    pieces,
    prompt_length,
    prompt_length_limit,
)
from salut_tui.engine.tokenize import PIECE_CHARS, SLACK_PER_PIECE, count_over_context
from salut_tui.engine.types import GenerationRequest
from salut_tui.node import Node
from tests.long_context import long_context_copy
from tests.model_factory import _CORPUS
from tests.test_openai_client import live_node

TEXT = " ".join(_CORPUS)  # text the tiny tokenizer was trained on: ~4 characters per token


def text_of(chars: int) -> str:
    return (TEXT * (chars // len(TEXT) + 1))[:chars]


def test_prompt_length_counts_characters_of_every_message() -> None:
    chat = GenerationRequest(
        "m",
        messages=(
            {"role": "system", "content": "abc"},
            {"role": "user", "content": [{"type": "text", "text": "de"}]},
        ),
    )
    assert prompt_length(chat) == 5
    assert prompt_length(GenerationRequest("m", prompt="hello")) == 5
    assert prompt_length_limit(512) == 512 * MAX_CHARS_PER_TOKEN


def test_pieces_cut_before_whitespace_and_add_up() -> None:
    text = text_of(10_000)
    cut = pieces(text, 1000)
    assert "".join(cut) == text
    assert all(len(p) <= 1000 for p in cut) and len(cut) > 10
    assert all(p[0].isspace() for p in cut[1:])  # each cut is just before whitespace
    assert pieces("x" * 2500, 1000) == ["x" * 1000, "x" * 1000, "x" * 500]  # no space: hard cuts
    assert pieces("short", 1000) == ["short"]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path):
    from mlx_lm.utils import load_tokenizer

    return load_tokenizer(tiny_model_path)


async def test_counting_in_pieces_matches_the_whole_and_stops_early(tokenizer) -> None:
    text = text_of(6 * PIECE_CHARS)
    whole = len(tokenizer.encode(text, add_special_tokens=False))
    n_pieces = len(pieces(text, PIECE_CHARS))
    # The pieces' counts add up to the whole's within the slack the refusal allows for.
    counted = sum(
        len(tokenizer.encode(p, add_special_tokens=False)) for p in pieces(text, PIECE_CHARS)
    )
    assert abs(counted - whole) <= SLACK_PER_PIECE * n_pieces
    assert await count_over_context(tokenizer, [text], whole + 1) is None  # it fits: no verdict
    over = await count_over_context(tokenizer, [text], whole // 3)
    assert over is not None and whole // 3 <= over < whole  # stopped before the end


@pytest.fixture
async def tiny_node(tmp_path, tiny_model_path, tiny_model_id):
    node = await live_node(tmp_path, tiny_model_path, tiny_model_id)
    yield node
    await node.stop()


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
async def test_a_prompt_that_cannot_fit_is_refused_before_tokenizing(
    tiny_node: Node, tiny_model_id: str, path: str
) -> None:
    # 12 MB for a 512-token context: tokenizing it took the MLX thread about 7 s before.
    huge = text_of(12_000_000)
    body: dict = {"model": tiny_model_id, "max_tokens": 1}
    if path == "/v1/completions":
        body["prompt"] = huge
    else:
        body["messages"] = [{"role": "user", "content": huge}]
    async with aiohttp.ClientSession() as session:
        began = time.perf_counter()
        async with session.post(f"http://127.0.0.1:{tiny_node.port}{path}", json=body) as r:
            elapsed = time.perf_counter() - began
            assert r.status == 400
            error = (await r.json())["error"]
    assert error["code"] == "context_length_exceeded"
    assert error["param"] == ("prompt" if path == "/v1/completions" else "messages")
    assert "12000000 characters" in error["message"]  # judged on its length, not its tokens
    assert elapsed < 5.0  # generous: parsing the body is what it costs, not tokenizing it
    assert tiny_node.engine is not None and tiny_node.engine.queued == 0


async def test_a_long_prompt_tokenizing_does_not_hold_other_streams(
    tmp_path, tiny_model_path
) -> None:
    """A prompt of ~2M tokens on a 1M-token model (about two seconds of counting before it is
    known too long): a small streaming request sent meanwhile completes before the long one is
    answered, and the long one is refused with the count where counting stopped."""
    model = "salut-test/long-context"
    node = await live_node(
        tmp_path, long_context_copy(tiny_model_path, tmp_path / "m", 1_000_000), model
    )
    assert node.engine is not None
    url = f"http://127.0.0.1:{node.port}/v1/completions"
    done: dict[str, float] = {}
    try:
        async with aiohttp.ClientSession() as session:

            async def post(name: str, body: dict) -> tuple[int, bytes]:
                async with session.post(url, json={"model": model, **body}) as r:
                    data = await r.read()
                done[name] = time.perf_counter()
                return r.status, data

            big = asyncio.ensure_future(
                post("big", {"prompt": text_of(8_000_000), "max_tokens": 1})
            )
            while node.engine.queued == 0:  # its prompt is being tokenized
                assert not big.done(), await big
                await asyncio.sleep(0.005)
            small_status, small_body = await post(
                "small", {"prompt": "Hello", "max_tokens": 8, "temperature": 0, "stream": True}
            )
            big_status, big_body = await asyncio.wait_for(big, timeout=120)
    finally:
        await node.stop()
    assert small_status == 200 and small_body.endswith(b"data: [DONE]\n\n")
    assert big_status == 400 and b"context_length_exceeded" in big_body
    assert b"the prompt has at least" in big_body  # counting stopped once it was over
    assert done["small"] < done["big"], "the small request waited for the long prompt"
