"""Request body validation: strict types, contract defaults, OpenAI `param` names. No model."""

from __future__ import annotations

import json

import pytest

from salut_tui.api.schemas import (
    ChatCompletionBody,
    CompletionBody,
    RequestInvalid,
    parse_body,
)
from salut_tui.engine.types import SamplingParams

HELLO = [{"role": "user", "content": "Hello!"}]


def chat(**fields) -> ChatCompletionBody:
    fields.setdefault("model", "org/m")
    fields.setdefault("messages", HELLO)
    return parse_body(ChatCompletionBody, json.dumps(fields).encode())


def chat_error(raw: bytes | dict) -> RequestInvalid:
    if isinstance(raw, dict):
        raw = {"model": "org/m", **raw}
    data = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
    with pytest.raises(RequestInvalid) as info:
        parse_body(ChatCompletionBody, data)
    return info.value


def test_contract_defaults() -> None:
    body = chat()
    assert body.sampling() == SamplingParams(
        temperature=1.0, top_p=1.0, repetition_penalty=1.0, max_tokens=None, stop=(), seed=None
    )
    assert body.streaming is False and body.include_usage is False
    request = body.to_request(client="10.0.0.2:5000")
    assert request.model == "org/m"
    assert request.client == "10.0.0.2:5000"
    assert request.messages == ({"role": "user", "content": "Hello!"},)
    assert request.prompt is None


def test_all_sampling_fields_are_passed_on() -> None:
    body = chat(
        model="org/m",
        temperature=0,
        top_p=0.5,
        repetition_penalty=1.2,
        max_tokens=9,
        stop=["\n", "", "END"],
        seed=42,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert body.sampling() == SamplingParams(0.0, 0.5, 1.2, 9, ("\n", "END"), 42)
    assert body.streaming and body.include_usage
    assert body.to_request("c").model == "org/m"


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert chat(max_completion_tokens=5).sampling().max_tokens == 5
    assert chat(max_tokens=10, max_completion_tokens=5).sampling().max_tokens == 5
    assert chat(stop="###").sampling().stop == ("###",)


def test_list_content_joins_text_parts_and_roles_map_to_template_roles() -> None:
    body = chat(
        messages=[
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Hello "},
                    {"type": "image_url", "image_url": {"url": "data:,"}},
                    {"type": "text", "text": "world"},
                ],
            },
            {"role": "assistant", "content": None, "tool_calls": []},
        ]
    )
    assert body.to_request("c").messages == (
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello world"},
        {"role": "assistant", "content": ""},
    )


def test_unknown_client_fields_are_accepted_and_ignored() -> None:
    body = chat(
        n=1,
        presence_penalty=0.5,
        frequency_penalty=0.1,
        user="me",
        tools=[{"type": "function", "function": {"name": "f"}}],
        tool_choice="auto",
        response_format={"type": "text"},
        logit_bias={"50256": -100},
        logprobs=False,
        temperature=None,
    )
    assert body.sampling().temperature == 1.0


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": "1.0"}, "temperature"),  # strict: no silent casting of strings
        ({"top_p": -0.1}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"stream": "yes"}, "stream"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": [1]}, "stop"),
        ({"n": 2}, "n"),
        ({"model": 3}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"content": "hi"}]}, "messages[0].role"),
        ({"messages": [*HELLO, {"role": "user", "content": 5}]}, "messages[1].content"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
    ],
)
def test_invalid_fields_name_their_param(fields: dict, param: str) -> None:
    error = chat_error({"messages": HELLO, **fields})
    assert error.param == param
    assert param in error.message


def test_missing_messages() -> None:
    error = chat_error({"model": "m"})
    assert error.param == "messages"
    assert "Missing required parameter" in error.message


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "empty"),
        (b"[1, 2]", "JSON object"),
        (b'"text"', "JSON object"),
    ],
)
def test_bodies_that_are_not_an_object(raw: bytes, words: str) -> None:
    error = chat_error(raw)
    assert error.param is None
    assert words in error.message


def test_completion_prompt_string_or_list_of_one() -> None:
    single = parse_body(
        CompletionBody, b'{"model": "m", "prompt": "def add(a, b):", "max_tokens": 8}'
    )
    listed = parse_body(
        CompletionBody, b'{"model": "m", "prompt": ["def add(a, b):"], "suffix": "", "echo": false}'
    )
    assert single.to_request("c").prompt == "def add(a, b):"
    assert listed.to_request("c").prompt == "def add(a, b):"
    assert listed.to_request("c").messages is None


@pytest.mark.parametrize("prompt", [["a", "b"], [], [1, 2], None])
def test_completion_prompt_rejected(prompt) -> None:
    with pytest.raises(RequestInvalid) as info:
        parse_body(CompletionBody, json.dumps({"model": "m", "prompt": prompt}).encode())
    assert info.value.param == "prompt"


@pytest.mark.parametrize("body", [CompletionBody, ChatCompletionBody])
@pytest.mark.parametrize(
    ("model", "words"),
    [
        (None, "valid string"),
        ("", "at least 1 character"),
        ("   ", "model id is required"),
        (..., "Missing required parameter: 'model'"),
        ("x" * 600, "at most 512 characters"),
    ],
)
def test_a_model_is_required(body, model, words: str) -> None:
    """Null, empty, blank or missing: a 400 naming `model`, never the node's default model."""
    fields: dict = {"messages": HELLO, "prompt": "The sky is"}
    if model is not ...:
        fields["model"] = model
    with pytest.raises(RequestInvalid) as info:
        parse_body(body, json.dumps(fields).encode())
    assert info.value.param == "model"
    assert words in info.value.message
