"""Tool calling with the real `openai` client against a live node.

The tiny random model cannot choose to call a tool, so the answers that call one are scripted with
`Engine.script_next`: a logits processor forces the tokens, and everything after sampling is the
real path (detokenizer, mlx-lm's `json_tools` parser picked from the chat template, the API's
encoding, the client's parsing). Named and required `tool_choice` are shown to work without a
script: the prompt is prefilled with the call's opening, so the random model's call has the name.
"""

from __future__ import annotations

import json

import openai
import pytest
from openai import AsyncOpenAI

from salut_tui.engine.prompt import encode_request
from salut_tui.engine.types import GenerationRequest, ToolSpec
from salut_tui.node import Node
from tests.helpers import openai_client
from tests.test_openai_client import live_node

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


@pytest.fixture
async def node(tmp_path, tiny_tool_model_path, tiny_tool_model_id):
    node = await live_node(tmp_path, tiny_tool_model_path, tiny_tool_model_id)
    yield node
    await node.stop()


@pytest.fixture
async def client(node: Node):
    async with openai_client(node.port) as client:
        yield client


async def script(node: Node, model: str, text: str) -> None:
    """The next answer on `model` is exactly `text` (then end of sequence)."""
    assert node.engine is not None
    tokenizer = node.engine.tokenizer_for(model)
    await node.engine.script_next(model, tokenizer.encode(text, add_special_tokens=False))


async def test_full_tool_loop(client: AsyncOpenAI, node: Node, tiny_tool_model_id: str) -> None:
    await script(node, tiny_tool_model_id, "Let me look." + CALL)
    first = await client.chat.completions.create(
        model=tiny_tool_model_id, messages=ASK, tools=[WEATHER, TIME], temperature=0
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me look."
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    # The client runs the tool and sends the call and its result back.
    history = [
        *ASK,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny", "celsius": 21}'},
    ]
    await script(node, tiny_tool_model_id, "It is sunny and 21 degrees in Paris.")
    final = await client.chat.completions.create(
        model=tiny_tool_model_id, messages=history, tools=[WEATHER, TIME], temperature=0
    )
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == "It is sunny and 21 degrees in Paris."
    assert not final.choices[0].message.tool_calls
    # The call and its result are in the prompt: it grew by more than the first answer's size.
    assert first.usage and final.usage
    assert final.usage.prompt_tokens > first.usage.prompt_tokens + 20


async def test_streamed_tool_call_accumulates_like_openai(
    client: AsyncOpenAI, node: Node, tiny_tool_model_id: str
) -> None:
    await script(node, tiny_tool_model_id, "Checking." + CALL)
    stream = await client.chat.completions.create(
        model=tiny_tool_model_id, messages=ASK, tools=[WEATHER], temperature=0, stream=True
    )
    content, calls, reasons = "", {}, []
    async for chunk in stream:
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for fragment in delta.tool_calls or []:
            slot = calls.setdefault(fragment.index, {"id": "", "name": "", "arguments": ""})
            slot["id"] += fragment.id or ""
            if fragment.function:
                slot["name"] += fragment.function.name or ""
                slot["arguments"] += fragment.function.arguments or ""
        reasons.append(chunk.choices[0].finish_reason)
    assert content == "Checking."
    assert list(calls) == [0]
    assert calls[0]["name"] == "get_weather" and calls[0]["id"].startswith("call_")
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assert reasons[-1] == "tool_calls" and set(reasons[:-1]) == {None}

    # The SDK's own accumulator (client.chat.completions.stream) gets the same call.
    await script(node, tiny_tool_model_id, CALL)
    strict = {"type": "function", "function": {**WEATHER["function"], "strict": True}}
    async with client.chat.completions.stream(
        model=tiny_tool_model_id, messages=ASK, tools=[strict], temperature=0
    ) as events:
        done = await events.get_final_completion()
    (call,) = done.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


async def test_named_tool_choice_is_enforced_by_prefill(
    client: AsyncOpenAI, node: Node, tiny_tool_model_id: str
) -> None:
    # No script names the function: the prefilled opening does; the model writes the arguments.
    await script(node, tiny_tool_model_id, '{"city": "Lyon"}}\n</tool_call>')
    response = await client.chat.completions.create(
        model=tiny_tool_model_id,
        messages=ASK,
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        temperature=0,
    )
    (call,) = response.choices[0].message.tool_calls or []
    assert call.function.name == "get_time"
    assert json.loads(call.function.arguments) == {"city": "Lyon"}
    assert response.choices[0].finish_reason == "tool_calls"


async def test_required_tool_choice_starts_a_call(node: Node, tiny_tool_model_id: str) -> None:
    assert node.engine is not None
    tokenizer = node.engine.tokenizer_for(tiny_tool_model_id)
    spec = ToolSpec((WEATHER,), "required")
    prompt = encode_request(
        tokenizer, GenerationRequest(tiny_tool_model_id, tuple(ASK), tools=spec)
    )
    auto = encode_request(
        tokenizer, GenerationRequest(tiny_tool_model_id, tuple(ASK), tools=ToolSpec((WEATHER,)))
    )
    assert tokenizer.decode(prompt).endswith("<|im_start|>assistant\n<tool_call>")
    assert prompt[: len(auto)] == auto


async def test_one_call_when_parallel_tool_calls_is_false(
    client: AsyncOpenAI, node: Node, tiny_tool_model_id: str
) -> None:
    two = CALL + CALL.replace("Paris", "Rome")
    await script(node, tiny_tool_model_id, two)
    both = await client.chat.completions.create(
        model=tiny_tool_model_id, messages=ASK, tools=[WEATHER], temperature=0
    )
    names = [json.loads(c.function.arguments)["city"] for c in both.choices[0].message.tool_calls]
    assert names == ["Paris", "Rome"]
    await script(node, tiny_tool_model_id, two)
    one = await client.chat.completions.create(
        model=tiny_tool_model_id,
        messages=ASK,
        tools=[WEATHER],
        parallel_tool_calls=False,
        temperature=0,
    )
    (call,) = one.choices[0].message.tool_calls or []
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert one.choices[0].finish_reason == "tool_calls"


async def test_tools_reach_the_prompt_unless_tool_choice_is_none(
    client: AsyncOpenAI, tiny_tool_model_id: str
) -> None:
    async def prompt_tokens(**extra) -> int:
        response = await client.chat.completions.create(
            model=tiny_tool_model_id, messages=ASK, max_tokens=1, temperature=0, **extra
        )
        assert response.usage is not None
        return response.usage.prompt_tokens

    plain = await prompt_tokens()
    assert await prompt_tokens(tools=[WEATHER]) > plain + 20
    assert await prompt_tokens(tools=[WEATHER], tool_choice="none") == plain


async def test_history_with_tool_calls_goes_through_the_template(
    node: Node, tiny_tool_model_id: str
) -> None:
    assert node.engine is not None
    tokenizer = node.engine.tokenizer_for(tiny_tool_model_id)
    history = (
        *ASK,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    )
    request = GenerationRequest(tiny_tool_model_id, history, tools=ToolSpec((WEATHER,)))
    text = tokenizer.decode(encode_request(tokenizer, request))
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}' in text
    assert "<tool_response>\nsunny\n</tool_response>" in text
    assert '"description": "The weather in a city"' in text  # the tool's definition


async def test_a_model_without_tool_support_is_a_400_naming_it(
    tmp_path, tiny_model_path, tiny_model_id
) -> None:
    node = await live_node(tmp_path, tiny_model_path, tiny_model_id)
    try:
        async with AsyncOpenAI(
            base_url=f"http://127.0.0.1:{node.port}/v1", api_key="x", max_retries=0
        ) as client:
            with pytest.raises(openai.BadRequestError) as raised:
                await client.chat.completions.create(
                    model=tiny_model_id, messages=ASK, tools=[WEATHER], max_tokens=2
                )
            error = raised.value.body
            assert isinstance(error, dict)
            assert error["code"] == "tools_not_supported" and error["param"] == "tools"
            assert tiny_model_id in error["message"]
            # tool_choice "none" on such a model is served, without the tools.
            answer = await client.chat.completions.create(
                model=tiny_model_id, messages=ASK, tools=[WEATHER], tool_choice="none", max_tokens=2
            )
            assert answer.choices[0].finish_reason == "length"
    finally:
        await node.stop()


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools"),
        ({"tools": [{"type": "retrieval"}]}, "tools"),
    ],
)
async def test_bad_tool_fields_are_400s(
    client: AsyncOpenAI, tiny_tool_model_id: str, extra: dict, param: str
) -> None:
    body = {"tools": [WEATHER], **extra}
    with pytest.raises(openai.BadRequestError) as raised:
        await client.chat.completions.create(
            model=tiny_tool_model_id, messages=ASK, max_tokens=2, extra_body=body
        )
    error = raised.value.body
    assert isinstance(error, dict) and str(error["param"]).startswith(param)
