"""The pure wire format: engine chunks -> OpenAI JSON and SSE bytes, with synthetic chunks."""

from __future__ import annotations

import json

from salut_tui.api.adapters import (
    SSE_DONE,
    Completion,
    StreamEncoder,
    sse_event,
    usage_body,
    wire_finish_reason,
)
from salut_tui.engine.types import Error, Finish, Token, Usage

USAGE = Usage(prompt_tokens=7, completion_tokens=3)


def parse_sse(raw: bytes) -> list[dict | str]:
    """Split an SSE byte stream into its `data:` payloads (JSON decoded, [DONE] kept as text)."""
    assert raw.endswith(b"\n\n")
    events: list[dict | str] = []
    for block in raw.decode("utf-8").split("\n\n")[:-1]:
        assert block.startswith("data: "), block
        assert "\n" not in block, "one JSON chunk per data: line"
        payload = block.removeprefix("data: ")
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def encode_all(encoder: StreamEncoder, chunks) -> bytes:
    return encoder.opening() + b"".join(encoder.encode(c) for c in chunks)


def test_finish_reasons_on_the_wire() -> None:
    assert wire_finish_reason("stop") == "stop"
    assert wire_finish_reason("length") == "length"
    assert wire_finish_reason("cancelled") == "stop"


def test_usage_body_adds_total() -> None:
    assert usage_body(USAGE) == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def test_sse_event_is_one_compact_utf8_line() -> None:
    raw = sse_event({"text": "héllo\nworld"})
    assert raw == 'data: {"text":"héllo\\nworld"}\n\n'.encode()


def test_ids_and_objects_per_dialect() -> None:
    chat = Completion.new("chat", "org/m", "abc")
    text = Completion.new("text", "org/m", "abc")
    assert chat.id == "chatcmpl-abc" and chat.object == "chat.completion"
    assert chat.chunk_object == "chat.completion.chunk"
    assert text.id == "cmpl-abc" and text.object == "text_completion"
    assert text.chunk_object == "text_completion"
    assert isinstance(chat.created, int) and chat.created > 1_700_000_000


def test_regular_chat_response_shape() -> None:
    body = Completion("chatcmpl-1", 123, "org/m", "chat").response(
        "Hi there", Finish("length", USAGE)
    )
    assert body == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 123,
        "model": "org/m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi there"},
                "logprobs": None,
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }


def test_regular_text_completion_maps_cancelled_to_stop() -> None:
    body = Completion("cmpl-1", 5, "m", "text").response("def f():", Finish("cancelled", USAGE))
    assert body["object"] == "text_completion"
    assert body["choices"] == [
        {"index": 0, "text": "def f():", "logprobs": None, "finish_reason": "stop"}
    ]
    assert body["usage"]["total_tokens"] == 10


def test_chat_stream_role_first_content_then_finish_then_done() -> None:
    encoder = StreamEncoder(Completion("chatcmpl-9", 1, "m", "chat"))
    raw = encode_all(encoder, [Token("Hel"), Token(""), Token("lo"), Finish("stop", USAGE)])
    events = parse_sse(raw)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "chatcmpl-9" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    # the empty token (text held back for a possible stop string) sends nothing
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:-1]] == ["Hel", "lo"]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert all("usage" not in c for c in chunks)
    assert encoder.finished


def test_include_usage_adds_a_final_usage_chunk_and_null_usage_elsewhere() -> None:
    encoder = StreamEncoder(Completion("chatcmpl-2", 1, "m", "chat"), include_usage=True)
    events = parse_sse(encode_all(encoder, [Token("a"), Finish("length", USAGE)]))
    assert events[-1] == "[DONE]"
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    assert events[-3]["choices"][0]["finish_reason"] == "length"
    assert all(e["usage"] is None for e in events[:-2])


def test_text_stream_has_no_role_chunk() -> None:
    encoder = StreamEncoder(Completion("cmpl-3", 1, "m", "text"))
    assert encoder.opening() == b""
    events = parse_sse(encode_all(encoder, [Token("x = "), Token("1"), Finish("cancelled", USAGE)]))
    assert [e["choices"][0]["text"] for e in events[:-1]] == ["x = ", "1", ""]
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert all(e["object"] == "text_completion" for e in events[:-1])
    assert events[-1] == "[DONE]"


def test_error_mid_stream_is_an_error_event_then_done() -> None:
    encoder = StreamEncoder(Completion("chatcmpl-4", 1, "m", "chat"))
    error = Error("engine stopped", type="server_error", code="engine_error", status=500)
    events = parse_sse(encode_all(encoder, [Token("partial"), error]))
    assert events[-2] == {
        "error": {
            "message": "engine stopped",
            "type": "server_error",
            "param": None,
            "code": "engine_error",
        }
    }
    assert events[-1] == "[DONE]"
    assert encoder.finished


def test_nothing_is_sent_after_the_stream_finished() -> None:
    encoder = StreamEncoder(Completion("chatcmpl-5", 1, "m", "chat"))
    assert encoder.encode(Finish("stop", USAGE)).endswith(SSE_DONE)
    assert encoder.encode(Token("late")) == b""
    assert encoder.encode(Finish("stop", USAGE)) == b""
