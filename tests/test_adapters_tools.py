"""Pure encoding of tool calls and log-probabilities in the chat/text adapters."""

from __future__ import annotations

import json

from salut_tui.api.adapters import Collected, Completion, StreamEncoder
from salut_tui.engine.types import Finish, Token, TokenLogprob, ToolCall, TopLogprob, Usage

CHAT = Completion("chatcmpl-1", 123, "org/m", "chat")
TEXT = Completion("cmpl-1", 123, "org/m", "text")
CALL = ToolCall(0, "call_a", "get_weather", '{"city": "Paris"}')


def lp(token: str, value: float) -> TokenLogprob:
    return TokenLogprob(token, value, (TopLogprob(token, value), TopLogprob("x", value - 1)))


def events(data: bytes) -> list[dict]:
    out = []
    for block in data.decode().split("\n\n"):
        if block.startswith("data: ") and block != "data: [DONE]":
            out.append(json.loads(block.removeprefix("data: ")))
    return out


def test_streamed_tool_call_is_head_then_arguments() -> None:
    encoder = StreamEncoder(CHAT)
    data = encoder.encode(CALL) + encoder.encode(Finish("tool_calls", Usage(3, 9)))
    head, arguments, last = (e["choices"][0] for e in events(data))
    assert head["delta"] == {
        "tool_calls": [
            {
                "index": 0,
                "id": "call_a",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
        ]
    }
    assert arguments["delta"] == {
        "tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Paris"}'}}]
    }
    assert last["finish_reason"] == "tool_calls" and last["delta"] == {}


def test_regular_answer_with_tool_calls_has_null_content() -> None:
    collected = Collected(CHAT)
    collected.add(CALL)
    body = collected.body(Finish("tool_calls", Usage(3, 9)))
    message = body["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ]
    assert body["choices"][0]["finish_reason"] == "tool_calls"


def test_held_back_logprobs_travel_with_the_next_text() -> None:
    encoder = StreamEncoder(CHAT, logprobs=True)
    assert encoder.encode(Token("", 1, lp("St", -0.5))) == b""  # held back (a stop may form)
    (first,) = events(encoder.encode(Token("Stop", 2, lp("op", -0.25))))
    tokens = [e["token"] for e in first["choices"][0]["logprobs"]["content"]]
    assert tokens == ["St", "op"] and first["choices"][0]["delta"]["content"] == "Stop"
    encoder.encode(Token("", 3, lp("!", -1.0)))
    finish = events(encoder.encode(Finish("stop", Usage(1, 3))))[0]["choices"][0]
    assert [e["token"] for e in finish["logprobs"]["content"]] == ["!"]
    entry = finish["logprobs"]["content"][0]
    assert entry["bytes"] == [33] and entry["top_logprobs"][1] == {
        "token": "x",
        "logprob": -2.0,
        "bytes": [120],
    }


def test_text_logprobs_offsets_run_on_after_echo() -> None:
    collected = Collected(TEXT, logprobs=True, echo="Hi")
    collected.add(Token(" there", 1, lp(" there", -0.5)))
    collected.add(Token("!", 2, lp("!", -0.1)))
    choice = collected.body(Finish("length", Usage(1, 2)))["choices"][0]
    assert choice["text"] == "Hi there!"
    assert choice["logprobs"] == {
        "tokens": [" there", "!"],
        "token_logprobs": [-0.5, -0.1],
        "top_logprobs": [{" there": -0.5, "x": -1.5}, {"!": -0.1, "x": -1.1}],
        "text_offset": [2, 8],
    }


def test_echo_streams_the_prompt_first() -> None:
    encoder = StreamEncoder(TEXT, echo="def f(")
    (opening,) = events(encoder.opening())
    assert opening["choices"][0]["text"] == "def f("
