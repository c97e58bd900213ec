"""Log-probabilities (chat and text completions, streamed and not), `echo` and `suffix`, with the
real `openai` client against a live node on the tiny model (greedy: repeatable)."""

from __future__ import annotations

import math

import openai
import pytest
from openai import AsyncOpenAI

from tests.test_openai_client import HELLO, client, node  # noqa: F401 (fixtures)

PROMPT = "Salut turns the machines"


async def test_chat_logprobs(client: AsyncOpenAI, tiny_model_id: str) -> None:  # noqa: F811
    response = await client.chat.completions.create(
        model=tiny_model_id,
        messages=HELLO,
        max_tokens=6,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
    )
    choice = response.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content is not None
    entries = choice.logprobs.content
    assert len(entries) == 6 == response.usage.completion_tokens  # type: ignore[union-attr]
    for entry in entries:
        assert entry.logprob <= 0 and math.isfinite(entry.logprob)
        assert entry.bytes == list(entry.token.encode("utf-8"))
        tops = [t.logprob for t in entry.top_logprobs]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True)
        # Greedy: the sampled token is the most likely one.
        assert entry.logprob == pytest.approx(tops[0])
        assert entry.token == entry.top_logprobs[0].token

    stream = await client.chat.completions.create(
        model=tiny_model_id,
        messages=HELLO,
        max_tokens=6,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
        stream=True,
    )
    streamed = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content:
            streamed.extend(chunk.choices[0].logprobs.content)
    assert [(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob) for e in entries]


async def test_chat_without_logprobs_has_none(client: AsyncOpenAI, tiny_model_id: str) -> None:  # noqa: F811
    response = await client.chat.completions.create(
        model=tiny_model_id, messages=HELLO, max_tokens=2, temperature=0
    )
    assert response.choices[0].logprobs is None
    # logprobs without top_logprobs: the token's own, no alternatives.
    response = await client.chat.completions.create(
        model=tiny_model_id, messages=HELLO, max_tokens=2, temperature=0, logprobs=True
    )
    entries = response.choices[0].logprobs.content  # type: ignore[union-attr]
    assert entries is not None and len(entries) == 2
    assert all(e.top_logprobs == [] for e in entries)


async def test_completion_logprobs_legacy_shape(client: AsyncOpenAI, tiny_model_id: str) -> None:  # noqa: F811
    response = await client.completions.create(
        model=tiny_model_id, prompt=PROMPT, max_tokens=5, temperature=0, logprobs=2
    )
    choice = response.choices[0]
    lp = choice.logprobs
    assert lp is not None and lp.tokens and lp.token_logprobs and lp.top_logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 5
    assert lp.text_offset is not None
    offset = 0
    for token, logprob, top, at in zip(
        lp.tokens, lp.token_logprobs, lp.top_logprobs, lp.text_offset, strict=True
    ):
        assert at == offset
        offset += len(token)
        assert 1 <= len(top) <= 2 and max(top.values()) == pytest.approx(logprob)
    stream = await client.completions.create(
        model=tiny_model_id, prompt=PROMPT, max_tokens=5, temperature=0, logprobs=2, stream=True
    )
    tokens: list[str] = []
    offsets: list[int] = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].logprobs:
            tokens += chunk.choices[0].logprobs.tokens or []
            offsets += chunk.choices[0].logprobs.text_offset or []
    assert tokens == lp.tokens and offsets == lp.text_offset


async def test_echo_puts_the_prompt_first(client: AsyncOpenAI, tiny_model_id: str) -> None:  # noqa: F811
    plain = await client.completions.create(
        model=tiny_model_id, prompt=PROMPT, max_tokens=4, temperature=0
    )
    echoed = await client.completions.create(
        model=tiny_model_id, prompt=PROMPT, max_tokens=4, temperature=0, echo=True
    )
    assert echoed.choices[0].text == PROMPT + plain.choices[0].text
    stream = await client.completions.create(
        model=tiny_model_id, prompt=PROMPT, max_tokens=4, temperature=0, echo=True, stream=True
    )
    text = "".join([c.choices[0].text async for c in stream if c.choices])
    assert text == PROMPT + plain.choices[0].text


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"suffix": "and the end."}, "suffix"),
        ({"echo": True, "logprobs": 1}, "echo"),
        ({"logprobs": 21}, "logprobs"),
    ],
)
async def test_unsupported_completion_fields_are_400s(
    client: AsyncOpenAI,  # noqa: F811
    tiny_model_id: str,
    extra: dict,
    param: str,
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await client.completions.create(
            model=tiny_model_id, prompt=PROMPT, max_tokens=2, extra_body=extra
        )
    body = raised.value.body
    assert isinstance(body, dict) and body["param"] == param
    if param != "logprobs":
        assert "not supported" in body["message"]


async def test_top_logprobs_needs_logprobs(client: AsyncOpenAI, tiny_model_id: str) -> None:  # noqa: F811
    with pytest.raises(openai.BadRequestError) as raised:
        await client.chat.completions.create(
            model=tiny_model_id, messages=HELLO, max_tokens=2, top_logprobs=2
        )
    assert isinstance(raised.value.body, dict) and raised.value.body["param"] == "top_logprobs"
