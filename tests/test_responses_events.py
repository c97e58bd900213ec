"""The Responses API's pure encoding: synthetic chunks -> exact event sequences and objects."""

from __future__ import annotations

import json

from salut_tui.api.responses import (
    ResponseBuilder,
    ResponseCollector,
    ResponseEventEncoder,
    ResponseMeta,
)
from salut_tui.engine.types import Error, Finish, Token, ToolCall, Usage

META = ResponseMeta("resp_1", 1700000000, "org/m", instructions="Be brief.", max_output_tokens=9)
CALL = ToolCall(0, "call_a", "get_weather", '{"city": "Paris"}')


def types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


def run(chunks: list) -> list[dict]:
    builder = ResponseBuilder(META)
    events = builder.opening()
    for chunk in chunks:
        events += builder.take(chunk)
    return events


def test_text_answer_event_sequence() -> None:
    events = run([Token("Hel"), Token(""), Token("lo"), Finish("stop", Usage(5, 3))])
    assert types(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["delta"] for e in events if e["type"] == "response.output_text.delta"] == [
        "Hel",
        "lo",
    ]
    created, done, completed = events[0], events[6], events[-1]
    assert created["response"]["status"] == "in_progress" and created["response"]["output"] == []
    assert done["text"] == "Hello"
    final = completed["response"]
    assert final["status"] == "completed" and final["instructions"] == "Be brief."
    (message,) = final["output"]
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"][0] == {
        "type": "output_text",
        "text": "Hello",
        "annotations": [],
        "logprobs": [],
    }
    assert final["usage"]["input_tokens"] == 5 and final["usage"]["output_tokens"] == 3
    assert final["usage"]["total_tokens"] == 8
    # One item id throughout.
    ids = {e.get("item_id") for e in events if "item_id" in e}
    assert ids == {message["id"]}


def test_text_then_tool_call() -> None:
    events = run([Token("Looking."), CALL, Finish("tool_calls", Usage(5, 9))])
    assert types(events)[2:] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added = events[8]
    assert added["output_index"] == 1 and added["item"]["arguments"] == ""
    assert added["item"]["status"] == "in_progress"
    output = events[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["message", "function_call"]
    assert output[1] == {
        "id": added["item"]["id"],
        "type": "function_call",
        "status": "completed",
        "call_id": "call_a",
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }


def test_length_is_incomplete_and_empty_answer_is_one_empty_message() -> None:
    events = run([Finish("length", Usage(5, 0))])
    assert types(events)[-1] == "response.incomplete"
    final = events[-1]["response"]
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"][0]["content"][0]["text"] == ""


def test_error_mid_stream_is_error_then_failed() -> None:
    events = run([Token("a"), Error("boom", code="generation_failed")])
    assert types(events)[-2:] == ["error", "response.failed"]
    assert events[-2]["code"] == "generation_failed" and events[-2]["message"] == "boom"
    assert events[-1]["response"]["status"] == "failed"
    assert events[-1]["response"]["error"] == {"code": "generation_failed", "message": "boom"}


def test_sse_encoding_and_collector_agree() -> None:
    chunks = [Token("Hi"), CALL, Finish("tool_calls", Usage(2, 4))]
    encoder = ResponseEventEncoder(META)
    raw = encoder.opening() + b"".join(encoder.encode(c) for c in chunks)
    assert encoder.finished
    blocks = raw.decode().split("\n\n")
    assert blocks[-1] == ""  # every event ends with a blank line; no [DONE]
    parsed = []
    for block in blocks[:-1]:
        event_line, data_line = block.split("\n")
        data = json.loads(data_line.removeprefix("data: "))
        assert event_line == f"event: {data['type']}"
        parsed.append(data)
    collector = ResponseCollector(META)
    for chunk in chunks[:-1]:
        collector.add(chunk)  # type: ignore[arg-type]
    body = collector.body(chunks[-1])  # type: ignore[arg-type]
    streamed = parsed[-1]["response"]
    assert [i["type"] for i in body["output"]] == [i["type"] for i in streamed["output"]]
    assert body["output"][0]["content"] == streamed["output"][0]["content"]
    assert body["usage"] == streamed["usage"]
