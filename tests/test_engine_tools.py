"""Tool-call splitting on answer text (engine/tools.py) with the tool model's real tokenizer and
mlx-lm's `json_tools` parser: markers split across pieces, one or many calls, text that is no call,
and the prefill that enforces tool_choice."""

from __future__ import annotations

import json

import pytest
from mlx_lm.tokenizer_utils import load

from salut_tui.engine.tools import ToolCallStream, active_tools, parser_name, prefill
from salut_tui.engine.types import ModelError, ToolSpec

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


@pytest.fixture(scope="module")
def tokenizer(tiny_tool_model_path):
    return load(tiny_tool_model_path)


def run(stream: ToolCallStream, pieces: list[str], reason: str = "stop"):
    text, calls = "", []
    for piece in pieces:
        step = stream.feed(piece)
        text, calls = text + step.text, calls + step.calls
        if step.end:
            return text, calls, "tool_calls"
    last, ended = stream.finish(reason)  # type: ignore[arg-type]
    return text + last.text, calls + last.calls, ended


def split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def test_the_tokenizer_is_json_tools(tokenizer) -> None:
    assert parser_name(tokenizer) == "json_tools"


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
def test_text_then_call_in_any_pieces(tokenizer, size: int) -> None:
    stream = ToolCallStream(tokenizer, ToolSpec((WEATHER,)), None)
    text, calls, reason = run(stream, split("Let me see. " + CALL, size))
    assert text == "Let me see. "
    assert [(c.index, c.name, json.loads(c.arguments)) for c in calls] == [
        (0, "get_weather", {"city": "Paris"})
    ]
    assert reason == "tool_calls"


def test_parallel_calls_and_single_call(tokenizer) -> None:
    two = CALL + "\n" + CALL.replace("Paris", "Rome")
    _, calls, _ = run(ToolCallStream(tokenizer, ToolSpec((WEATHER,)), None), split(two, 5))
    assert [json.loads(c.arguments)["city"] for c in calls] == ["Paris", "Rome"]
    assert [c.index for c in calls] == [0, 1] and calls[0].id != calls[1].id
    single = ToolCallStream(tokenizer, ToolSpec((WEATHER,), parallel=False), None)
    _, calls, reason = run(single, split(two, 5))
    assert [json.loads(c.arguments)["city"] for c in calls] == ["Paris"]
    assert reason == "tool_calls"


def test_text_that_is_no_call_stays_content(tokenizer) -> None:
    stream = ToolCallStream(tokenizer, ToolSpec((WEATHER,)), None)
    text, calls, reason = run(stream, ["Plain <tool_", "call>not json</tool_call> end"])
    assert calls == [] and reason == "stop"
    assert text == "Plain not json end"
    # A call cut by the length limit is no call either.
    stream = ToolCallStream(tokenizer, ToolSpec((WEATHER,)), None)
    text, calls, reason = run(stream, ['<tool_call>{"name": "get_wea'], "length")
    assert calls == [] and reason == "length" and text == '{"name": "get_wea'


def test_prefill_for_required_and_named(tokenizer) -> None:
    assert prefill(tokenizer, ToolSpec((WEATHER,))) is None
    assert prefill(tokenizer, ToolSpec((WEATHER,), "required")) == "<tool_call>"
    named = prefill(tokenizer, ToolSpec((WEATHER,), "function", "get_weather"))
    assert named == '<tool_call>\n{"name": "get_weather", "arguments": '
    # The output side starts inside the call, with the prefilled opening as its text.
    spec = ToolSpec((WEATHER,), "function", "get_weather")
    stream = ToolCallStream(tokenizer, spec, named)
    _, calls, reason = run(stream, ['{"city": "Oslo"}}\n</tool_call>', "more text"])
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Oslo"})]
    assert reason == "tool_calls"


def test_a_model_without_tool_calling_is_refused(tiny_model_path) -> None:
    plain = load(tiny_model_path)
    assert parser_name(plain) is None
    with pytest.raises(ModelError) as raised:
        active_tools(plain, "org/plain", ToolSpec((WEATHER,)))
    assert raised.value.status == 400 and "org/plain" in raised.value.message
    assert active_tools(plain, "org/plain", ToolSpec((WEATHER,), "none")) is None
