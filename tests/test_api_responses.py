"""`POST /v1/responses` with the real `openai` client (`client.responses.create`, streamed and
not, and the SDK's `responses.stream` helper) against a live node."""

from __future__ import annotations

import json

import openai
import pytest
from openai import AsyncOpenAI

from salut_tui.node import Node
from tests.test_api_tools import client, node, script  # noqa: F401 (fixtures)

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


async def test_text_input(client: AsyncOpenAI, node: Node, tiny_tool_model_id: str) -> None:  # noqa: F811
    await script(node, tiny_tool_model_id, "Bonjour!")
    response = await client.responses.create(
        model=tiny_tool_model_id, input="Say hello in French.", temperature=0
    )
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed"
    assert response.output_text == "Bonjour!"
    assert response.usage is not None and response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


async def test_messages_instructions_and_limit(
    client: AsyncOpenAI,  # noqa: F811
    tiny_tool_model_id: str,
) -> None:
    short = await client.responses.create(
        model=tiny_tool_model_id, input="Hi", max_output_tokens=3, temperature=0
    )
    assert short.status == "incomplete"
    assert short.incomplete_details is not None
    assert short.incomplete_details.reason == "max_output_tokens"
    assert short.usage is not None and short.usage.output_tokens == 3
    longer = await client.responses.create(
        model=tiny_tool_model_id,
        instructions="You are terse.",
        input=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Hello."}]},
            {"role": "user", "content": [{"type": "input_text", "text": "Again?"}]},
        ],
        max_output_tokens=3,
        temperature=0,
    )
    assert longer.instructions == "You are terse."
    assert longer.usage is not None
    assert longer.usage.input_tokens > short.usage.input_tokens + 5  # history and instructions


async def test_streamed_events(client: AsyncOpenAI, node: Node, tiny_tool_model_id: str) -> None:  # noqa: F811
    await script(node, tiny_tool_model_id, "Bonjour tout le monde!")
    stream = await client.responses.create(
        model=tiny_tool_model_id, input="Say hello.", temperature=0, stream=True
    )
    events = [event async for event in stream]
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "Bonjour tout le monde!"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].response.output_text == deltas  # type: ignore[union-attr]

    # The SDK's accumulating helper rebuilds the same response.
    await script(node, tiny_tool_model_id, "Bonjour tout le monde!")
    async with client.responses.stream(
        model=tiny_tool_model_id, input="Say hello.", temperature=0
    ) as helper:
        final = await helper.get_final_response()
    assert final.output_text == "Bonjour tout le monde!"


async def test_function_tool_loop(client: AsyncOpenAI, node: Node, tiny_tool_model_id: str) -> None:  # noqa: F811
    await script(node, tiny_tool_model_id, CALL)
    first = await client.responses.create(
        model=tiny_tool_model_id, input="Weather in Paris?", tools=[WEATHER], temperature=0
    )
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    assert call.call_id.startswith("call_")

    await script(node, tiny_tool_model_id, "Sunny in Paris.")
    final = await client.responses.create(
        model=tiny_tool_model_id,
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        ],
        tools=[WEATHER],
        temperature=0,
    )
    assert final.output_text == "Sunny in Paris."
    assert first.usage is not None and final.usage is not None
    assert final.usage.input_tokens > first.usage.input_tokens  # the call and result are in

    # Streamed, tool_choice "required": the prompt ends with the call's start marker (prefilled),
    # the model writes the rest; the call arrives as function_call_arguments events.
    await script(node, tiny_tool_model_id, CALL.removeprefix("<tool_call>"))
    stream = await client.responses.create(
        model=tiny_tool_model_id,
        input="Weather in Paris?",
        tools=[WEATHER],
        tool_choice="required",
        temperature=0,
        stream=True,
    )
    events = [event async for event in stream]
    (done,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert json.loads(done.arguments) == {"city": "Paris"}
    assert events[-1].type == "response.completed"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
        ({"tools": [{"type": "web_search"}]}, "tools"),
        ({"background": True}, "background"),
        ({"text": {"format": {"type": "json_object"}}}, "text"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input[0].content[0]",
        ),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
    ],
)
async def test_unsupported_fields_are_clear_400s(
    client: AsyncOpenAI,  # noqa: F811
    tiny_tool_model_id: str,
    extra: dict,
    param: str,
) -> None:
    body = {"model": tiny_tool_model_id, "input": "Hi", **extra}
    with pytest.raises(openai.BadRequestError) as raised:
        await client.post("/responses", body=body, cast_to=dict)
    error = raised.value.body
    assert isinstance(error, dict) and str(error["param"]).startswith(param), error
